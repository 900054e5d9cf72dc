import { expect } from 'chai';
import pg from 'pg';
import { createLock, withLock, type BaseLock, type LockLostError } from '../src/index.js';
import { countTraffic } from './support/counting.js';
import { databaseUrls } from './support/databases.js';
import { abortedWithin, expectRejectCode, sleep } from './support/expect.js';
import { startTcpProxy } from './support/tcp-proxy.js';
import {
  openInspector,
  TARGET_KINDS,
  uniqueKey,
  type LockInspector,
  type OpenTarget,
} from './support/targets.js';

async function killHolder(inspector: LockInspector, lock: BaseLock): Promise<void> {
  const ids = await inspector.holderIds(lock.actualKey);
  expect(ids).to.have.length(1);
  await inspector.kill(ids[0]!);
}

for (const kind of TARGET_KINDS) {
  describe(`lost locks on ${kind.name}`, () => {
    let inspector: LockInspector;
    let opened: OpenTarget[] = [];

    async function open(): Promise<object> {
      const target = await kind.open();
      opened.push(target);
      return target.target;
    }

    before(async () => {
      inspector = await openInspector(kind.dialect);
    });
    after(() => inspector.close());
    afterEach(async () => {
      const leftovers = await inspector.leftovers();
      const started = performance.now();
      await Promise.all(opened.map((target) => target.close()));
      opened = [];
      expect(performance.now() - started, 'closing the target took too long').to.be.below(2_000);
      expect(leftovers).to.deep.equal([]);
    });

    it('a server-side kill of the holder aborts lock.signal within 1 s with ERR_DLOCK_LOST', async () => {
      const lost: LockLostError[] = [];
      const lock = createLock(await open(), uniqueKey(), { onLost: (err) => lost.push(err) });
      await lock.acquire();
      const signal = lock.signal!;
      expect(signal.aborted).to.equal(false);
      await killHolder(inspector, lock);
      const reason = await abortedWithin(signal, 1_000);
      expect(reason).to.have.property('code', 'ERR_DLOCK_LOST');
      expect(lost).to.deep.equal([reason]);
      expect(lock.locked).to.equal(false);
      await expectRejectCode(lock.release(), 'ERR_DLOCK_LOST');
      await lock.close();
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
    });

    it('after a lost lock another session can take the lock at once', async () => {
      const key = uniqueKey();
      const lock = createLock(await open(), key);
      await lock.acquire();
      await killHolder(inspector, lock);
      await abortedWithin(lock.signal!, 1_000);
      const other = createLock(await open(), key);
      expect(await other.acquire({ timeout: 1_000 })).to.equal(true);
      await other.release();
    });

    if (kind.pooled) {
      it('the pool discards the killed connection and serves the next lock', async () => {
        const target = await open();
        const key = uniqueKey();
        const lock = createLock(target, key);
        await lock.acquire();
        await killHolder(inspector, lock);
        await abortedWithin(lock.signal!, 1_000);
        await lock.close();
        for (let i = 0; i < 3; i += 1) {
          const next = createLock(target, key);
          expect(await next.acquire({ timeout: 1_000 })).to.equal(true);
          await next.release();
        }
      });
    }

    it('withLock() rejects with ERR_DLOCK_LOST when the lock is lost during the callback', async () => {
      const target = await open();
      const run = withLock(target, uniqueKey(), async (lock, signal) => {
        await killHolder(inspector, lock);
        await abortedWithin(signal, 1_000);
        return 'finished anyway';
      });
      await expectRejectCode(run, 'ERR_DLOCK_LOST');
    });
  });
}

describe('keepalive', () => {
  it('a silent network partition is noticed within about two keepalive periods', async () => {
    const url = new URL((await databaseUrls()).pg);
    const proxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
    const client = new pg.Client({
      host: '127.0.0.1',
      port: proxy.port,
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: url.pathname.slice(1),
    });
    client.on('error', () => undefined);
    await client.connect();
    const inspector = await openInspector('postgres');
    try {
      const lock = createLock(client, uniqueKey(), { keepalive: 200 });
      await lock.acquire();
      const started = performance.now();
      proxy.freeze();
      const reason = await abortedWithin(lock.signal!, 1_500);
      expect(reason).to.have.property('code', 'ERR_DLOCK_LOST');
      expect(performance.now() - started).to.be.within(150, 700);
      expect(lock.locked).to.equal(false);
      // The frozen session still holds the lock on the server until the server notices.
      const [pid] = await inspector.holderIds(lock.actualKey);
      await inspector.kill(pid!);
    } finally {
      await proxy.close();
      await inspector.close();
    }
  });

  it('a pooled connection lost to a partition is closed at once, so the pool can end', async () => {
    const url = new URL((await databaseUrls()).pg);
    const proxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
    const pool = new pg.Pool({
      host: '127.0.0.1',
      port: proxy.port,
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: url.pathname.slice(1),
      max: 2,
    });
    const inspector = await openInspector('postgres');
    try {
      const lock = createLock(pool, uniqueKey(), { keepalive: 100 });
      await lock.acquire();
      const [pid] = await inspector.holderIds(lock.actualKey);
      proxy.freeze();
      await abortedWithin(lock.signal!, 1_000);
      await lock.close();
      const started = performance.now();
      await pool.end();
      expect(performance.now() - started).to.be.below(500);
      expect(pool.totalCount).to.equal(0);
      await inspector.kill(pid!);
    } finally {
      await proxy.close();
      await inspector.close();
    }
  });

  it('without keepalive a held lock sends nothing while it is held', async () => {
    const client = new pg.Client({ connectionString: (await databaseUrls()).pg });
    await client.connect();
    const counter = countTraffic(client);
    try {
      const lock = createLock(client, uniqueKey());
      await lock.acquire();
      // A quiet half second is the claim: a keepalive of any period under it would show.
      const { counts, calls } = await counter.measure(() => sleep(500), 0);
      expect(counts, JSON.stringify(calls)).to.include({
        roundTrips: 0,
        messages: 0,
        queryCalls: 0,
      });
      await lock.release();
    } finally {
      counter.detach();
      await client.end();
    }
  });

  it('keepalive outside 10 ms .. 2^31 - 1 ms throws ERR_DLOCK_INVALID_OPTION', () => {
    const pool = new pg.Pool();
    for (const keepalive of [0, 5, -1, NaN, 2 ** 31, '100']) {
      try {
        createLock(pool, 'k', { keepalive: keepalive as number });
        expect.fail(`keepalive ${keepalive} was accepted`);
      } catch (err) {
        expect(err).to.have.property('code', 'ERR_DLOCK_INVALID_OPTION');
      }
    }
    return pool.end();
  });
});
