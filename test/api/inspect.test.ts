import { expect } from 'chai';
import { createLock, inspectLock, PostgresLock } from '../../src/index.js';
import { holderIdsOf } from '../../src/api/inspect.js';
import { expectRejectCode } from '../support/expect.js';
import { holdLock, openSession, type Session } from '../support/sessions.js';
import { TARGET_KINDS, uniqueKey, type DialectName } from '../support/targets.js';

const DIALECTS: readonly DialectName[] = ['postgres', 'mysql'];

for (const dialect of DIALECTS) {
  describe(`inspectLock on ${dialect}`, function () {
    let observer: Session;
    const cleanups: (() => Promise<void>)[] = [];

    before(async () => {
      observer = await openSession(dialect);
    });
    after(() => observer.close());
    afterEach(async () => {
      await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
    });

    it('names the holder of each of several keys in order, in one statement (null when free)', async () => {
      // On PostgreSQL, a held key of each sign, as pg_locks splits them into unsigned halves.
      const signOf = (key: string) =>
        dialect === 'postgres' ? PostgresLock.convert(key) < 0n : false;
      let a = uniqueKey('ids');
      let c = uniqueKey('ids');
      while (dialect === 'postgres' && !signOf(a)) a = uniqueKey('ids');
      while (dialect === 'postgres' && signOf(c)) c = uniqueKey('ids');
      const b = uniqueKey('ids');
      const first = await holdLock(dialect, a);
      const second = await holdLock(dialect, c);
      cleanups.push(first.close, second.close);
      const keys = [a, b, c, a].map((key) => createLock(observer.target, key).actualKey);
      expect(await holderIdsOf(observer.target, keys)).to.deep.equal([
        first.session.id,
        null,
        second.session.id,
        first.session.id,
      ]);
      expect(await holderIdsOf(observer.target, [])).to.deep.equal([]);
    });

    it('reports a lock nobody holds as not held, with no holders', async () => {
      const result = await inspectLock(observer.target, uniqueKey('inspect'));
      expect(result).to.deep.equal({ held: false, holders: [], waiters: [] });
    });

    it('lists a session that waits for the lock, with its session id, until it stops', async () => {
      const key = uniqueKey('inspect');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const waiting = await openSession(dialect);
      cleanups.push(() => waiting.close());
      const waiter = createLock(waiting.target, key);
      const controller = new AbortController();
      const acquiring = waiter.acquire({ signal: controller.signal }).catch((err: unknown) => err);
      let found = await inspectLock(observer.target, key);
      const deadline = Date.now() + 10_000;
      while (found.waiters.length === 0 && Date.now() < deadline) {
        found = await inspectLock(observer.target, key);
      }
      expect(found.held).to.equal(true);
      expect(found.holders.map((h) => h.sessionId)).to.deep.equal([holder.session.id]);
      expect(found.waiters.map((w) => w.sessionId)).to.deep.equal([waiting.id]);
      expect(found.waiters[0]?.mode).to.equal('exclusive');
      controller.abort(new Error('stop'));
      expect(await acquiring).to.have.property('message', 'stop');
      expect((await inspectLock(observer.target, key)).waiters).to.deep.equal([]);
    });

    it("names the exclusive holder's session, user, database and client", async () => {
      const key = uniqueKey('inspect');
      const holder = await holdLock(dialect, key, { applicationName: 'inspect-test' });
      cleanups.push(holder.close);
      const { held, holders } = await inspectLock(observer.target, key);
      expect(held).to.equal(true);
      expect(holders).to.have.length(1);
      const [found] = holders;
      expect(found?.mode).to.equal('exclusive');
      expect(found?.sessionId).to.equal(holder.session.id);
      expect(found?.user).to.be.a('string').and.not.equal('');
      expect(found?.database).to.equal('test');
      expect(found?.clientAddress).to.match(/:\d+$|local socket/);
      expect(found?.stateSince).to.be.instanceOf(Date);
      if (dialect === 'postgres') {
        expect(found?.applicationName).to.equal('inspect-test');
        expect(found?.connectedAt).to.be.instanceOf(Date);
        expect(found?.state).to.equal('idle');
      } else {
        expect(found?.state).to.equal('Sleep');
      }
    });

    it('sees the lock freed once its holder releases it', async () => {
      const key = uniqueKey('inspect');
      const holder = await holdLock(dialect, key);
      await holder.close();
      expect((await inspectLock(observer.target, key)).held).to.equal(false);
    });

    it('uses the convert option to find the database key', async () => {
      const key = uniqueKey('inspect');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const wrapped = { id: key };
      const result = await inspectLock(observer.target, wrapped, {
        convert: (k) => (dialect === 'postgres' ? PostgresLock.convert(k.id) : k.id),
      });
      expect(result.held).to.equal(true);
    });

    for (const kind of TARGET_KINDS.filter((k) => k.dialect === dialect)) {
      it(`works through ${kind.name}`, async () => {
        const key = uniqueKey('inspect');
        const holder = await holdLock(dialect, key);
        cleanups.push(holder.close);
        const opened = await kind.open();
        cleanups.push(opened.close);
        const result = await inspectLock(opened.target, key);
        expect(result.holders.map((h) => h.sessionId)).to.deep.equal([holder.session.id]);
      });
    }
  });
}

describe('inspectLock on postgres only', function () {
  let observer: Session;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    observer = await openSession('postgres');
  });
  after(() => observer.close());
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  it('lists every shared holder', async () => {
    const key = uniqueKey('inspect');
    const first = await holdLock('postgres', key, { shared: true });
    const second = await holdLock('postgres', key, { shared: true });
    cleanups.push(first.close, second.close);
    const { holders } = await inspectLock(observer.target, key);
    expect(holders.map((h) => h.mode)).to.deep.equal(['shared', 'shared']);
    expect(holders.map((h) => h.sessionId)).to.have.members([first.session.id, second.session.id]);
  });

  it('does not count a two-int4 advisory lock on the same numbers', async () => {
    const key = uniqueKey('inspect');
    const k = BigInt.asUintN(64, PostgresLock.convert(key));
    const high = BigInt.asIntN(32, k >> 32n);
    const low = BigInt.asIntN(32, k & 0xffffffffn);
    const other = await openSession('postgres');
    cleanups.push(other.close);
    await other.query('SELECT pg_advisory_lock($1::int4, $2::int4)', [
      high.toString(),
      low.toString(),
    ]);
    expect((await inspectLock(observer.target, key)).held).to.equal(false);
  });

  it('rejects an unknown option with ERR_DLOCK_INVALID_OPTION', async () => {
    const options = { timeout: 5 } as unknown as Parameters<typeof inspectLock>[2];
    await expectRejectCode(inspectLock(observer.target, 'k', options), 'ERR_DLOCK_INVALID_OPTION');
  });
});
