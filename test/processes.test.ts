/** Mutual exclusion and crash recovery across real processes. */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { createLock } from '../src/index.js';
import { crossProcessScope, succeed, workerEnv } from './support/process-scope.js';
import { startNodeScript } from './support/processes.js';
import { openInspector, uniqueKey } from './support/targets.js';

const WORKER = fileURLToPath(new URL('./fixtures/lock-worker.ts', import.meta.url));
const DIALECTS = [
  { dialect: 'postgres', client: 'pg' },
  { dialect: 'mysql', client: 'mysql2' },
] as const;

for (const { dialect, client } of DIALECTS) {
  describe(`cross-process locking on ${dialect}`, function () {
    this.timeout(60_000);
    const scope = crossProcessScope(dialect, client, 'dlock_test');

    for (const via of ['knex', 'raw'] as const) {
      it(`4 processes x 25 read-modify-writes under the lock (${via}) lose no update`, async () => {
        await scope.knex.schema.createTable(scope.table, (t) => t.integer('value').notNullable());
        await scope.knex(scope.table).insert({ value: 0 });
        const key = uniqueKey('counter');
        const env = await workerEnv();
        const workers = Array.from({ length: 4 }, () =>
          startNodeScript(WORKER, ['counter', dialect, via, key, scope.table, '25'], env),
        );
        await Promise.all(workers.map(succeed));
        const row = await scope.knex(scope.table).first('value');
        expect(Number(row.value)).to.equal(100);
      });
    }

    if (dialect === 'postgres') {
      it('shared holders overlap each other; an exclusive holder overlaps nobody', async () => {
        await scope.knex.schema.createTable(scope.table, (t) => {
          t.integer('pid');
          t.boolean('shared');
          t.double('started');
          t.double('ended');
        });
        const key = uniqueKey('intervals');
        const env = await workerEnv();
        const roles = ['shared', 'shared', 'shared', 'exclusive'];
        const workers = roles.map((role) =>
          startNodeScript(WORKER, ['interval', dialect, 'raw', key, scope.table, '8', role], env),
        );
        await Promise.all(workers.map(succeed));
        const rows: { pid: number; shared: boolean; started: number; ended: number }[] = await scope
          .knex(scope.table)
          .select();
        const overlaps = (a: (typeof rows)[0], b: (typeof rows)[0]) =>
          a.started < b.ended && b.started < a.ended;
        let sharedOverlaps = 0;
        for (const [i, a] of rows.entries()) {
          for (const b of rows.slice(i + 1)) {
            if (!overlaps(a, b)) continue;
            expect(a.shared && b.shared, 'an exclusive holder overlapped another holder').to.equal(
              true,
            );
            if (a.pid !== b.pid) sharedOverlaps += 1;
          }
        }
        expect(rows).to.have.length(32);
        expect(sharedOverlaps, 'shared holders never overlapped').to.be.greaterThan(0);
      });
    }

    it('a holder killed with SIGKILL frees the lock for another process within 2 s', async () => {
      const key = uniqueKey('crash');
      const holder = startNodeScript(WORKER, ['hold', dialect, 'raw', key], await workerEnv());
      await holder.waitForStdout(/held/);
      const lock = createLock(scope.knex, key);
      expect(await lock.acquire({ block: false })).to.equal(false);
      holder.child.kill('SIGKILL');
      await holder.exited;
      const started = performance.now();
      expect(await lock.acquire({ timeout: 2_000 })).to.equal(true);
      expect(performance.now() - started).to.be.below(2_000);
      await lock.release();
    });

    it("a server-side kill of the holder's connection is noticed by it within 1 s", async () => {
      const key = uniqueKey('kill');
      const holder = startNodeScript(WORKER, ['hold', dialect, 'knex', key], await workerEnv());
      await holder.waitForStdout(/held/);
      const inspector = await openInspector(dialect);
      try {
        const lock = createLock(scope.knex, key);
        const [id] = await inspector.holderIds(lock.actualKey);
        const killedAt = performance.now();
        await inspector.kill(id!);
        await holder.waitForStdout(/lost/, 1_000);
        expect(performance.now() - killedAt).to.be.below(1_000);
        expect((await holder.exited).code).to.equal(3);
        expect(await lock.acquire({ timeout: 1_000 })).to.equal(true);
        await lock.release();
      } finally {
        await inspector.close();
      }
    });
  });
}
