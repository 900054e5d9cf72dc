/** createMultiLock: several keys, all or none, in an order that cannot deadlock. */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { createLock, createMultiLock, type MultiLock } from '../../src/index.js';
import { expectThrowCode } from '../support/expect.js';
import { kindSuite } from '../support/kind-suite.js';
import { crossProcessScope, succeed, workerEnv } from '../support/process-scope.js';
import { startNodeScript } from '../support/processes.js';
import { TARGET_KINDS, uniqueKey } from '../support/targets.js';

const WORKER = fileURLToPath(new URL('../fixtures/lock-worker.ts', import.meta.url));
const KINDS = TARGET_KINDS.filter(
  (kind) => kind.name === 'knex (pg)' || kind.name === 'knex (mysql2)',
);

for (const kind of KINDS) {
  describe(`createMultiLock on ${kind.name}`, function () {
    const suite = kindSuite(kind);
    const multis: MultiLock[] = [];
    const multiOn = (target: object, keys: string[]) => {
      const multi = createMultiLock(target, keys);
      multis.push(multi);
      return multi;
    };
    afterEach(async () => {
      await Promise.all(multis.splice(0).map((multi) => multi.close()));
    });

    it('acquire() holds every key and release() frees them all', async () => {
      const multi = multiOn(await suite.open(), [uniqueKey('a'), uniqueKey('b'), uniqueKey('c')]);
      expect(await multi.acquire()).to.equal(true);
      expect(multi.locked).to.equal(true);
      for (const lock of multi.locks)
        expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
      await multi.release();
      expect(multi.locked).to.equal(false);
      for (const lock of multi.locks)
        expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
    });

    it('takes the keys in the order of their database keys, whatever order they were given', async () => {
      const keys = [uniqueKey('x'), uniqueKey('y'), uniqueKey('z'), uniqueKey('w')];
      const target = await suite.open();
      const forward = multiOn(target, keys).locks.map((lock) => lock.actualKey);
      const backward = multiOn(target, [...keys].reverse()).locks.map((lock) => lock.actualKey);
      expect(forward).to.deep.equal(backward);
      const sorted = [...forward].sort((a, b) =>
        typeof a === 'bigint'
          ? a < (b as bigint)
            ? -1
            : 1
          : Buffer.compare(Buffer.from(a), Buffer.from(b as string)),
      );
      expect(forward).to.deep.equal(sorted);
    });

    it('a key held elsewhere: a try resolves false and holds none of the keys', async () => {
      const keys = [uniqueKey('a'), uniqueKey('b'), uniqueKey('c')];
      const target = await suite.open();
      const multi = multiOn(target, keys);
      // The last key in taking order is held elsewhere, so the others are taken first.
      const last = multi.locks[multi.locks.length - 1]!;
      const holder = suite.lockOn(await suite.open(), String(last.key));
      expect(await holder.acquire()).to.equal(true);
      expect(await multi.acquire({ block: false })).to.equal(false);
      expect(await multi.acquire({ timeout: 200 })).to.equal(false);
      for (const lock of multi.locks.slice(0, -1)) {
        expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
      }
      await holder.release();
      expect(await multi.acquire({ timeout: 5_000 })).to.equal(true);
      await multi.release();
    });

    it('an aborted wait rejects with its reason and holds none of the keys', async () => {
      const multi = multiOn(await suite.open(), [uniqueKey('a'), uniqueKey('b')]);
      const last = multi.locks[1]!;
      const holder = suite.lockOn(await suite.open(), String(last.key));
      expect(await holder.acquire()).to.equal(true);
      const controller = new AbortController();
      const waiting = multi.acquire({ signal: controller.signal });
      await suite.waits.waitFor(last.actualKey);
      const reason = new Error('stop');
      controller.abort(reason);
      const caught = await waiting.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(caught).to.equal(reason);
      expect(await suite.inspector.holders(multi.locks[0]!.actualKey)).to.equal(0);
      await holder.release();
    });

    it('signal aborts with ERR_DLOCK_LOST when one of the locks is lost', async () => {
      const multi = createMultiLock(await suite.open(), [uniqueKey('a'), uniqueKey('b')], {
        connection: 'dedicated',
      });
      multis.push(multi);
      expect(await multi.acquire()).to.equal(true);
      const signal = multi.signal!;
      expect(signal.aborted).to.equal(false);
      const [id] = await suite.inspector.holderIds(multi.locks[1]!.actualKey);
      await suite.inspector.kill(id!);
      if (!signal.aborted)
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
      expect((signal.reason as { code?: string }).code).to.equal('ERR_DLOCK_LOST');
      await multi.close();
    });

    it('createMultiLock throws for no keys, two keys that are one database lock, a bad option', async () => {
      const target = await suite.open();
      expectThrowCode(() => createMultiLock(target, []), 'ERR_DLOCK_INVALID_KEY');
      const key = uniqueKey();
      expectThrowCode(() => createMultiLock(target, [key, key]), 'ERR_DLOCK_INVALID_KEY');
      expectThrowCode(
        () => createMultiLock(target, [key, 'other'], { xact: 1 as never }),
        'ERR_DLOCK_INVALID_OPTION',
      );
      expect(createLock(target, key).locked).to.equal(false);
    });
  });

  describe(`createMultiLock across processes on ${kind.name}`, function () {
    this.timeout(120_000);
    const scope = crossProcessScope(
      kind.dialect,
      kind.dialect === 'postgres' ? 'pg' : 'mysql2',
      'dlock_multi',
    );

    it('two processes, 100 rounds of [a, b] against [b, a]: no deadlock, no lost update, nothing left held', async () => {
      await scope.knex.schema.createTable(scope.table, (t) => t.integer('value').notNullable());
      await scope.knex(scope.table).insert({ value: 0 });
      const a = uniqueKey('a');
      const b = uniqueKey('b');
      const env = await workerEnv();
      const workers = [`${a},${b}`, `${b},${a}`].map((keys) =>
        startNodeScript(WORKER, ['multi', kind.dialect, 'knex', keys, scope.table, '100'], env),
      );
      await Promise.all(workers.map(succeed));
      const row = await scope.knex(scope.table).first('value');
      expect(Number(row.value)).to.equal(200);
    });
  });
}
