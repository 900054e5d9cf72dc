/** createSemaphore / withSemaphore: at most `max` holders of a key at once. */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';
import pg from 'pg';
import {
  createLock,
  createSemaphore,
  inspectLock,
  withSemaphore,
  type Semaphore,
} from '../../src/index.js';
import { databaseUrls } from '../support/databases.js';
import { expectRejectCode, expectThrowCode, sleep } from '../support/expect.js';
import { kindSuite } from '../support/kind-suite.js';
import { crossProcessScope, succeed, workerEnv } from '../support/process-scope.js';
import { startNodeScript } from '../support/processes.js';
import { TARGET_KINDS, uniqueKey } from '../support/targets.js';

const WORKER = fileURLToPath(new URL('../fixtures/lock-worker.ts', import.meta.url));
const KINDS = TARGET_KINDS.filter((k) => k.name === 'knex (pg)' || k.name === 'knex (mysql2)');

for (const kind of KINDS) {
  describe(`createSemaphore on ${kind.name}`, function () {
    const suite = kindSuite(kind);
    const made: Semaphore[] = [];
    const semaphoreOn = (target: object, key: string, max: number) => {
      const semaphore = createSemaphore(target, key, { max });
      made.push(semaphore);
      return semaphore;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((semaphore) => semaphore.close()));
    });

    it('max: 3 lets three holders in, refuses a fourth, and lets it in once one releases', async () => {
      const key = uniqueKey('sem');
      const targets = await Promise.all([0, 1, 2, 3].map(() => suite.open()));
      const [a, b, c, d] = targets.map((target) => semaphoreOn(target, key, 3));
      for (const semaphore of [a!, b!, c!]) {
        expect(await semaphore.acquire({ block: false })).to.equal(true);
      }
      expect(new Set([a!.slot, b!.slot, c!.slot])).to.deep.equal(new Set([0, 1, 2]));
      expect(await d!.acquire({ block: false })).to.equal(false);
      await b!.release();
      expect(await d!.acquire({ block: false })).to.equal(true);
      expect(d!.locked).to.equal(true);
      await Promise.all([a!, c!, d!].map((semaphore) => semaphore.release()));
    });

    it('a timed acquire while full resolves false once the timeout passes, holding nothing', async () => {
      const key = uniqueKey('sem');
      const holder = semaphoreOn(await suite.open(), key, 1);
      expect(await holder.acquire()).to.equal(true);
      const waiter = semaphoreOn(await suite.open(), key, 1);
      const started = performance.now();
      expect(await waiter.acquire({ timeout: 300 })).to.equal(false);
      expect(performance.now() - started).to.be.at.least(290);
      expect(waiter.locked).to.equal(false);
      await holder.release();
    });

    it('a waiting acquire takes the slot that is freed, whichever it is', async () => {
      const key = uniqueKey('sem');
      const holders = await Promise.all(
        [0, 1, 2].map(async () => semaphoreOn(await suite.open(), key, 3)),
      );
      for (const holder of holders) expect(await holder.acquire()).to.equal(true);
      const waiter = semaphoreOn(await suite.open(), key, 3);
      const latencies: number[] = [];
      for (const holder of holders) {
        const freed = holder.slot;
        const waiting = waiter.acquire({ timeout: 10_000 });
        await suite.waits.waitFor(waiter.slotKeys[freed!]!);
        const releasedAt = performance.now();
        await holder.release();
        expect(await waiting).to.equal(true);
        latencies.push(performance.now() - releasedAt);
        expect(waiter.slot).to.equal(freed);
        await waiter.release();
        expect(await holder.acquire({ block: false })).to.equal(true);
      }
      latencies.sort((x, y) => x - y);
      console.log(
        `      slot handover after release: ${latencies.map((ms) => ms.toFixed(1)).join(', ')} ms`,
      );
      for (const holder of holders) await holder.release();
    });

    it('an aborted wait rejects with its reason and holds no slot', async () => {
      const key = uniqueKey('sem');
      const holder = semaphoreOn(await suite.open(), key, 2);
      const other = semaphoreOn(await suite.open(), key, 2);
      expect(await holder.acquire()).to.equal(true);
      expect(await other.acquire()).to.equal(true);
      const waiter = semaphoreOn(await suite.open(), key, 2);
      const controller = new AbortController();
      const waiting = waiter.acquire({ signal: controller.signal });
      await suite.waits.waitFor(waiter.slotKeys[0]!);
      const reason = new Error('stop');
      controller.abort(reason);
      const caught = await waiting.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(caught).to.equal(reason);
      expect(waiter.locked).to.equal(false);
      await holder.release();
      expect(await waiter.acquire({ block: false })).to.equal(true);
      await Promise.all([waiter.release(), other.release()]);
    });

    it('a waiting acquire sends nothing while it waits; close() cancels it (ERR_DLOCK_NOT_HELD)', async () => {
      const key = uniqueKey('sem');
      const holder = semaphoreOn(await suite.open(), key, 2);
      const other = semaphoreOn(await suite.open(), key, 2);
      expect(await holder.acquire()).to.equal(true);
      expect(await other.acquire()).to.equal(true);
      const target = await suite.open();
      const waiter = semaphoreOn(target, key, 2);
      const waiting = waiter.acquire();
      for (const slotKey of waiter.slotKeys) await suite.waits.waitFor(slotKey);
      let sent = 0;
      const count = () => void (sent += 1);
      (target as Knex).on('query', count);
      await sleep(500);
      (target as Knex).off('query', count);
      expect(sent, 'statements sent while waiting').to.equal(0);
      await waiter.close();
      await expectRejectCode(waiting, 'ERR_DLOCK_NOT_HELD');
      expect(waiter.locked).to.equal(false);
      await Promise.all([holder.release(), other.release()]);
    });

    it('a smaller max than the key is used with elsewhere is refused while every slot is taken', async () => {
      const key = uniqueKey('sem');
      const wide = await Promise.all(
        [0, 1, 2, 3].map(async () => semaphoreOn(await suite.open(), key, 4)),
      );
      for (const semaphore of wide)
        expect(await semaphore.acquire({ block: false })).to.equal(true);
      const narrow = semaphoreOn(await suite.open(), key, 2);
      await expectRejectCode(narrow.acquire({ timeout: 1_000 }), 'ERR_DLOCK_INVALID_OPTION');
      expect(narrow.locked).to.equal(false);
      await Promise.all(wide.map((semaphore) => semaphore.release()));
    });

    it('a larger max is refused while a semaphore with a smaller max holds a slot', async () => {
      const key = uniqueKey('sem');
      const narrow = semaphoreOn(await suite.open(), key, 2);
      expect(await narrow.acquire({ block: false })).to.equal(true);
      const wide = semaphoreOn(await suite.open(), key, 4);
      await expectRejectCode(wide.acquire({ block: false }), 'ERR_DLOCK_INVALID_OPTION');
      expect(wide.locked).to.equal(false);
      const target = await suite.open();
      const held = await Promise.all(
        wide.slotKeys.map(async (_, slot) => {
          const seen = await inspectLock(target, `knex-dlock:semaphore:${key}:${slot}`);
          return seen.held;
        }),
      );
      expect(held.filter(Boolean), 'slots held after the refusal').to.have.length(1);
      await narrow.release();
    });

    it('a smaller max is refused with free slots of its own, when a larger max holds one it can see', async () => {
      const key = uniqueKey('sem');
      const wide = await Promise.all(
        [0, 1, 2, 3].map(async () => semaphoreOn(await suite.open(), key, 4)),
      );
      for (const semaphore of wide)
        expect(await semaphore.acquire({ block: false })).to.equal(true);
      // Keep only the holder of slot 1: slot 2 (beyond a max of 2) is then free.
      await Promise.all(wide.filter((s) => s.slot !== 1).map((s) => s.release()));
      const narrow = semaphoreOn(await suite.open(), key, 2);
      await expectRejectCode(narrow.acquire({ block: false }), 'ERR_DLOCK_INVALID_OPTION');
      expect(narrow.locked).to.equal(false);
      const slot0 = await inspectLock(await suite.open(), `knex-dlock:semaphore:${key}:0`);
      expect(slot0.held, 'slot 0 given back').to.equal(false);
    });

    it('a slot held without its marker for a moment (a holder between its two grants) is not refused', async () => {
      const key = uniqueKey('sem');
      const target = (await suite.open()) as Knex;
      const slot0 = createLock(await suite.open(), `knex-dlock:semaphore:${key}:0`);
      const marker0 = createLock(await suite.open(), `knex-dlock:semaphore:${key}:0:max:2`);
      try {
        expect(await slot0.acquire({ block: false })).to.equal(true);
        const semaphore = semaphoreOn(target, key, 2);
        // The first look at the holders answers: only then does the marker follow.
        let looks = 0;
        let marked: Promise<boolean> | undefined;
        const isLook = (sql: string) => /ORDINALITY|IS_USED_LOCK\(\?\) AS h0/.test(sql);
        const onResponse = (_: unknown, query: { sql: string }) => {
          if (!isLook(query.sql)) return;
          looks += 1;
          marked ??= marker0.acquire({ block: false });
        };
        target.on('query-response', onResponse);
        try {
          expect(await semaphore.acquire({ block: false })).to.equal(true);
        } finally {
          target.off('query-response', onResponse);
        }
        expect(await marked, 'marker taken').to.equal(true);
        expect(looks, 'looks at the holders').to.be.at.least(2);
        expect(semaphore.slot).to.equal(1);
        await semaphore.release();
      } finally {
        await Promise.all([slot0.close(), marker0.close()]);
      }
    });

    it('withSemaphore runs the callback on a slot and gives it back; ERR_DLOCK_TIMEOUT when full', async () => {
      const key = uniqueKey('sem');
      const target = await suite.open();
      const result = await withSemaphore(target, key, { max: 1 }, async (semaphore) => {
        expect(semaphore.locked).to.equal(true);
        await expectRejectCode(
          withSemaphore(await suite.open(), key, { max: 1, block: false }, () => 'ran'),
          'ERR_DLOCK_TIMEOUT',
        );
        return 'done';
      });
      expect(result).to.equal('done');
      expect(await withSemaphore(target, key, { max: 1, block: false }, () => 'again')).to.equal(
        'again',
      );
    });

    it('createSemaphore throws for a bad max, a lock-only option, or a single connection', async () => {
      const target = await suite.open();
      for (const max of [0, 1.5, -1, Number.NaN]) {
        expectThrowCode(() => createSemaphore(target, 'k', { max }), 'ERR_DLOCK_INVALID_OPTION');
      }
      expectThrowCode(
        () => createSemaphore(target, 'k', { max: 2, xact: true } as never),
        'ERR_DLOCK_INVALID_OPTION',
      );
      if (kind.dialect === 'postgres') {
        const client = new pg.Client((await databaseUrls()).pg);
        expectThrowCode(
          () => createSemaphore(client, 'k', { max: 2 }),
          'ERR_DLOCK_UNSUPPORTED_TARGET',
        );
      }
    });
  });

  describe(`createSemaphore across processes on ${kind.name}`, function () {
    this.timeout(120_000);
    const scope = crossProcessScope(
      kind.dialect,
      kind.dialect === 'postgres' ? 'pg' : 'mysql2',
      'dlock_sem',
    );

    it('3 processes x 10 workers, max: 3: never more than 3 holders, 3 reached, every worker served', async () => {
      await scope.knex.schema.createTable(scope.table, (t) => {
        t.integer('holders').notNullable();
        t.integer('peak').notNullable();
      });
      await scope.knex(scope.table).insert({ holders: 0, peak: 0 });
      const key = uniqueKey('sem');
      const env = await workerEnv();
      const workers = Array.from({ length: 3 }, () =>
        startNodeScript(
          WORKER,
          ['semaphore', kind.dialect, 'knex', key, scope.table, '10', '3'],
          env,
        ),
      );
      await Promise.all(workers.map(succeed));
      const row = await scope.knex(scope.table).first('holders', 'peak');
      expect(Number(row.holders)).to.equal(0);
      expect(Number(row.peak)).to.equal(3);
      for (const worker of workers) {
        expect(worker.stdout().split('held\n').length - 1).to.equal(30);
      }
    });

    it('SIGKILL of a holder frees its slot for a waiter', async () => {
      const key = uniqueKey('sem');
      const env = await workerEnv();
      const holder = startNodeScript(
        WORKER,
        ['semaphore-hold', kind.dialect, 'knex', key, '1'],
        env,
      );
      await holder.waitForStdout(/held/);
      const knexTarget = scope.knex;
      const waiter = createSemaphore(knexTarget, key, { max: 1 });
      try {
        expect(await waiter.acquire({ block: false })).to.equal(false);
        const waiting = waiter.acquire({ timeout: 15_000 });
        holder.child.kill('SIGKILL');
        expect(await waiting).to.equal(true);
      } finally {
        await waiter.close();
      }
    });
  });
}
