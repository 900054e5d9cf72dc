/**
 * The library's own lock connections (the default for pooled targets) seen from outside the
 * process: turns taken across processes, locks dropped without release, and processes that end
 * by themselves once their pool is closed.
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { MysqlLock, PostgresLock } from '../../src/index.js';
import { crossProcessScope, succeed, workerEnv } from '../support/process-scope.js';
import { sleep } from '../support/expect.js';
import { startNodeScript } from '../support/processes.js';
import { until, watchLockWaits } from '../support/server-state.js';
import { holdLock } from '../support/sessions.js';
import { openInspector, uniqueKey, type DialectName } from '../support/targets.js';

const WORKER = fileURLToPath(new URL('../fixtures/connections-worker.ts', import.meta.url));
const DIALECTS = [
  { dialect: 'postgres', client: 'pg', pools: ['pg-pool'] },
  { dialect: 'mysql', client: 'mysql2', pools: ['mysql-pool', 'mysql-promise-pool'] },
] as const;
const END_OF: Record<string, string> = {
  knex: 'knex.destroy()',
  'pg-pool': 'pg.Pool end()',
  'mysql-pool': 'mysql2 pool end()',
  'mysql-promise-pool': 'mysql2/promise pool end()',
};

function actualKey(dialect: DialectName, key: string): bigint | string {
  return dialect === 'postgres' ? PostgresLock.convert(key) : MysqlLock.convert(key);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface Grant {
  id: number;
  tag: string;
  started: number;
  ended: number | null;
}

for (const { dialect, client, pools } of DIALECTS) {
  describe(`lock connections across processes on ${dialect}`, function () {
    this.timeout(60_000);
    const scope = crossProcessScope(dialect, client, 'dlock_conn');

    it('waiters of two processes on one key take turns: all 60 granted, one holder at a time, neither process served more than 3 times in a row while the other waits', async () => {
      await scope.knex.schema.createTable(scope.table, (t) => {
        t.increments('id');
        t.string('tag', 8).notNullable();
        t.integer('seq').notNullable();
        t.double('started').notNullable();
        t.double('ended');
        t.unique(['tag', 'seq']);
      });
      const key = uniqueKey('fair');
      const env = await workerEnv();
      const parent = await holdLock(dialect, key);
      const waits = await watchLockWaits(dialect);
      try {
        const workers = ['a', 'b'].map((tag) =>
          startNodeScript(WORKER, ['fair', dialect, key, scope.table, tag, '30', '4'], env),
        );
        // Each process queues its 30 waiters in memory behind one that waits in the database.
        await Promise.all(workers.map((worker) => worker.waitForStdout(/^queued/m, 15_000)));
        // One database waiter per process.
        await waits.waitFor(actualKey(dialect, key), { count: 2 });
        const before = await scope.knex(scope.table).count({ n: '*' }).first();
        expect(Number(before?.n), 'granted while the parent held the key').to.equal(0);
        await parent.close();
        await Promise.all(workers.map(succeed));
        for (const worker of workers) expect(worker.stdout()).to.match(/^done$/m);
      } finally {
        await parent.close();
        await waits.close();
      }

      const grants: Grant[] = (await scope.knex(scope.table).select().orderBy('id')).map(
        (row: Grant) => ({
          id: Number(row.id),
          tag: row.tag,
          started: Number(row.started),
          ended: row.ended === null ? null : Number(row.ended),
        }),
      );
      expect(grants, 'grants').to.have.length(60);
      expect(grants.filter((g) => g.tag === 'a')).to.have.length(30);
      for (const grant of grants)
        expect(grant.ended, `grant ${grant.id} never ended`).to.not.equal(null);
      for (const [i, a] of grants.entries()) {
        for (const b of grants.slice(i + 1)) {
          const apart = a.ended! <= b.started || b.ended! <= a.started;
          expect(apart, `grants ${a.id} (${a.tag}) and ${b.id} (${b.tag}) overlapped`).to.equal(
            true,
          );
        }
      }
      // A process that took its 30 turns first would leave the other none of the first 30.
      const order = grants.map((g) => g.tag).join('');
      for (const tag of ['a', 'b']) {
        const count = grants.slice(0, 30).filter((g) => g.tag === tag).length;
        expect(
          count,
          `process ${tag}'s grants among the first 30 (order: ${order})`,
        ).to.be.at.least(8);
      }
      // While both processes still wait, neither is served more than a few times in a row.
      const bothWaiting = order.slice(0, Math.min(order.lastIndexOf('a'), order.lastIndexOf('b')));
      const longestRun = Math.max(...(bothWaiting.match(/a+|b+/g) ?? ['']).map((r) => r.length));
      expect(longestRun, `longest run of one process (order: ${order})`).to.be.at.most(3);
    });

    it('a held lock that the program drops without releasing is released when garbage-collected, with a DLOCK_ABANDONED warning naming its key', async () => {
      const abandonedKey = uniqueKey('abandoned');
      const keptKey = uniqueKey('kept');
      const inspector = await openInspector(dialect);
      const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --expose-gc`.trim();
      const worker = startNodeScript(WORKER, ['abandon', dialect, abandonedKey, keptKey], {
        ...(await workerEnv()),
        NODE_OPTIONS: nodeOptions,
      });
      try {
        await worker.waitForStdout(/^held$/m, 15_000);
        expect(await inspector.holders(actualKey(dialect, abandonedKey))).to.equal(1);
        expect(await inspector.holders(actualKey(dialect, keptKey))).to.equal(1);

        worker.child.stdin.write('collect\n');
        await worker.waitForStdout(/^collected$/m);
        await until(
          'holders of the dropped lock',
          () => inspector.holders(actualKey(dialect, abandonedKey)),
          (n) => n === 0,
          5_000,
        );
        await worker.waitForStderr(
          new RegExp(`\\[DLOCK_ABANDONED\\][^\\n]*${escapeRegExp(abandonedKey)}`),
          5_000,
        );
        // The lock still referenced stays held, and is not reported.
        expect(await inspector.holders(actualKey(dialect, keptKey))).to.equal(1);
        expect(worker.stderr()).to.not.include(keptKey);

        worker.child.stdin.end('release\n');
        await succeed(worker);
        expect(worker.stdout()).to.match(/^kept held: true$/m);
        expect(await inspector.holders(actualKey(dialect, keptKey))).to.equal(0);
      } finally {
        await inspector.close();
      }
    });

    for (const via of ['knex', ...pools]) {
      for (const scenario of ['released', 'timeout'] as const) {
        const what =
          scenario === 'released' ? 'a lock was acquired and released' : 'a timed acquire failed';
        it(`a process exits by itself within 3 s of ${END_OF[via]} after ${what} (${via})`, async () => {
          const key = uniqueKey('exit');
          const other = scenario === 'timeout' ? await holdLock(dialect, key) : undefined;
          try {
            const worker = startNodeScript(
              WORKER,
              ['exit', dialect, via, scenario, key],
              await workerEnv(),
            );
            await worker.waitForStdout(/^destroyed$/m, 15_000);
            const destroyedAt = performance.now();
            // The claim is a deadline: still running after it is the failure.
            const exit = await Promise.race([
              worker.exited,
              sleep(3_000).then(() => 'running' as const),
            ]);
            if (exit === 'running') expect.fail('still running 3 s after the pool was closed');
            expect(performance.now() - destroyedAt).to.be.below(3_000);
            expect(exit.code, `worker failed: ${worker.stderr()}`).to.equal(0);
            expect(worker.stdout()).to.match(
              scenario === 'released' ? /^released$/m : /^timed out$/m,
            );
          } finally {
            await other?.close();
          }
        });
      }
    }
  });
}
