/** Scenario: `select 1` inside each lock, on a knex pool smaller than the workers. */
import { type Knex } from 'knex';
import { lockConnectionStats, withLock } from '../library.js';
import { benchKey, spread, type BenchContext } from '../runner.js';
import { connectionRows, cyclesRow, interleaveRounds } from './rounds.js';
import {
  ACQUIRE_CONNECTION_TIMEOUT,
  type Client,
  type Contender,
  MULTIPLEXED,
  POOL,
  QUESTION,
  type Seen,
  type Server,
  WORKERS,
  WORK_POOL_MAX,
  closeKnex,
  trackedKnex,
} from './servers.js';

/** `withLock(knex, key, () => knex.raw('select 1'))` on a pool of 4, multiplexed against 'pool'. */
export async function workInsideLock(
  ctx: BenchContext,
  client: Client,
  database: Server,
): Promise<void> {
  const question = `${QUESTION}: 16 workers, select 1 inside the lock, pool max ${WORK_POOL_MAX} (${client})`;
  ctx.log(question);
  const url = client === 'pg' ? ctx.pgUrl : ctx.mysqlUrl;
  const config: Partial<Knex.Config> = {
    pool: { min: 0, max: WORK_POOL_MAX },
    acquireConnectionTimeout: ACQUIRE_CONNECTION_TIMEOUT,
    // knex warns with a stack trace for every connection it could not get: they are counted.
    log: { warn: () => undefined },
  };
  const multiplexed = trackedKnex(client, url, config);
  const pooled = trackedKnex(client, url, config);
  const keys = (name: string) => Array.from({ length: WORKERS }, () => benchKey(`work-${name}`));
  const multiplexedKeys = keys('multiplexed');
  const pooledKeys = keys('pool');
  const contenders: Contender[] = [
    {
      name: MULTIPLEXED,
      server: database,
      sockets: multiplexed.sockets,
      async cycle(worker) {
        const { knex } = multiplexed;
        await withLock(knex, multiplexedKeys[worker]!, () => knex.raw('select 1'));
      },
      lockConnections: () => lockConnectionStats(multiplexed.knex).connections,
    },
    {
      name: POOL,
      server: database,
      sockets: pooled.sockets,
      async cycle(worker) {
        const { knex } = pooled;
        await withLock(knex, pooledKeys[worker]!, () => knex.raw('select 1'), {
          connection: 'pool',
        });
      },
    },
  ];
  try {
    // No warm-up: a round of 'pool' lasts until knex gives up on its connections (2 s).
    const seen = await interleaveRounds(contenders, {
      rounds: ctx.quick ? 1 : 3,
      ms: 500,
      warmupMs: 0,
    });
    const mux = seen.get(MULTIPLEXED)!;
    const pool = seen.get(POOL)!;
    const failedShare = (mine: Seen) =>
      spread(mine.rounds.map((r) => (100 * r.failures) / Math.max(1, r.ops + r.failures)));
    for (const [name, mine] of seen) {
      const failures = mine.rounds.reduce((sum, r) => sum + r.failures, 0);
      const seconds = mine.rounds.reduce((sum, r) => sum + r.seconds, 0);
      ctx.log(`  ${name}: ${failures} failed cycles in ${seconds.toFixed(1)} s`);
    }
    ctx.rows.push(
      cyclesRow(question, MULTIPLEXED, mux, "cycles, vs 'pool'", { name: POOL, seen: pool }),
      cyclesRow(question, POOL, pool, 'cycles'),
      {
        question,
        contender: MULTIPLEXED,
        metric: 'failed cycles',
        unit: '%',
        ...failedShare(mux),
        samples: mux.rounds.length,
      },
      {
        question,
        contender: POOL,
        metric: 'failed cycles',
        unit: '%',
        ...failedShare(pool),
        samples: pool.rounds.length,
      },
      ...connectionRows(question, MULTIPLEXED, mux),
      ...connectionRows(question, POOL, pool),
    );
  } finally {
    await closeKnex(multiplexed.knex);
    await closeKnex(pooled.knex);
  }
}
