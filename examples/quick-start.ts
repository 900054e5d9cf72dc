/**
 * Two "replicas" run the same job; knex-dlock lets exactly one of them run it at a time, on
 * PostgreSQL and on MySQL/MariaDB. Run it with `npm run example`.
 *
 * It finds its databases like the tests do: DLOCK_PG_URL / DLOCK_MYSQL_URL, else the local
 * servers, else an embedded PostgreSQL (DLOCK_PG_EMBEDDED=1 asks for it) and throwaway containers
 * where Docker is available.
 */
import knexFactory from 'knex';
import { createLock, withLock } from '../src/index.js';
import { databaseUrls } from '../test/support/databases.js';

async function replica(name: string, knex: ReturnType<typeof knexFactory>, log: string[]) {
  const lock = createLock(knex, 'nightly-report');
  if (!(await lock.acquire({ timeout: 100 }))) {
    log.push(`${name}: another replica runs the report; skipping`);
    return;
  }
  try {
    log.push(`${name}: holding the lock, building the report`);
    await new Promise((resolve) => setTimeout(resolve, 300));
  } finally {
    await lock.release();
  }
}

async function main(): Promise<void> {
  const urls = await databaseUrls();
  try {
    for (const [client, connection] of [
      ['pg', urls.pg],
      ['mysql2', urls.mysql],
    ] as const) {
      const knex = knexFactory({ client, connection, pool: { min: 0, max: 4 } });
      const log: string[] = [];
      await Promise.all([replica('replica A', knex, log), replica('replica B', knex, log)]);
      const answer = await withLock(knex, 'nightly-report', async (lock) => lock.actualKey);
      console.log(`${client}:\n  ${log.join('\n  ')}\n  withLock ran on key ${String(answer)}`);
      await knex.destroy();
    }
  } finally {
    await urls.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
