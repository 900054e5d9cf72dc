/**
 * The bounds of a pooled target's lock connections: how many there are, when they close, where
 * they go, what happens when PostgreSQL's lock table is full, and which settings are accepted.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import mysql from 'mysql2';
import pg from 'pg';
import {
  closeLockConnections,
  configureLockConnections,
  createLock,
  lockConnectionStats,
} from '../../src/index.js';
import { databaseUrls } from '../support/databases.js';
import { expectThrowCode, sleep } from '../support/expect.js';
import {
  DIALECTS,
  ensureSideDatabase,
  mysqlConfig,
  lockConnectionScope,
  openKnex,
  openProbe,
  SIDE_DATABASE,
  uniqueTag,
  until,
} from '../support/lock-connections.js';
import { openSession, urlFor } from '../support/sessions.js';
import { openInspector, TARGET_KINDS, uniqueKey } from '../support/targets.js';

for (const { dialect, name } of DIALECTS) {
  describe(`lock connection limits on ${name}`, () => {
    const scope = lockConnectionScope(dialect, async () => {
      if (dialect === 'mysql') await ensureSideDatabase();
    });
    const { cleanups, knexFor } = scope;

    it('8 000 locks held at once share at most 8 lock connections, and release leaves none', async function () {
      this.timeout(60_000);
      const tag = dialect === 'postgres' ? uniqueTag('many') : SIDE_DATABASE;
      const before = await scope.probe.tagged(tag);
      const knex = await knexFor({ tag });
      const prefix = uniqueKey('many');
      const locks = Array.from({ length: 8_000 }, (_, i) => createLock(knex, `${prefix}:${i}`));
      const actualKeys = locks.map((lock) => lock.actualKey);

      const acquired = await Promise.all(locks.map((lock) => lock.acquire()));
      expect(acquired.filter((ok) => !ok)).to.have.length(0);
      const stats = lockConnectionStats(knex);
      expect(stats.connections).to.be.within(1, 8);
      expect(stats).to.include({ holds: 8_000, queued: 0, waiting: 0 });
      const extra = (await scope.probe.tagged(tag)).filter((id) => !before.includes(id));
      expect(extra.length).to.be.within(1, 8);
      const holders = await scope.probe.holdersOf(actualKeys);
      expect(holders).to.have.length(8_000);
      const holderIds = [...new Set(holders)];
      expect(holderIds.length).to.be.within(1, 8);
      expect(extra).to.include.members(holderIds);

      await Promise.all(locks.map((lock) => lock.release()));
      expect(lockConnectionStats(knex).holds).to.equal(0);
      if (dialect === 'postgres') expect(await scope.probe.advisoryLocksOf(extra)).to.equal(0);
      expect(await scope.probe.holdersOf(actualKeys)).to.deep.equal([]);
    });

    it('with max: 2, one lock connection waits, further waits queue in memory, and tries still run', async function () {
      this.timeout(20_000);
      const knex = await knexFor();
      configureLockConnections(knex, { max: 2 });
      const session = await openSession(dialect);
      cleanups.push(() => session.close());
      const keys = [uniqueKey('cap-a'), uniqueKey('cap-b'), uniqueKey('cap-c')];
      const holders = keys.map((key) => createLock(session.target, key));
      for (const holder of holders) expect(await holder.acquire()).to.equal(true);
      const actualKeys = holders.map((holder) => holder.actualKey);

      const waiters = keys.map((key) => createLock(knex, key));
      const results = waiters.map(async (waiter) => {
        const acquired = await waiter.acquire({ timeout: 10_000 });
        if (acquired) await waiter.release();
        return acquired;
      });
      const stats = await until(
        'one wait on a lock connection, the others queued',
        () => lockConnectionStats(knex),
        (s) => s.waiting === 1 && s.queued >= 2,
      );
      expect(stats.connections).to.be.at.most(2);
      await until(
        'one wait in the database',
        () => scope.probe.waitingFor(actualKeys),
        (n) => n === 1,
      );
      const samples: number[] = [];
      for (let i = 0; i < 10; i += 1) samples.push(await scope.probe.waitingFor(actualKeys));
      expect(Math.max(...samples)).to.equal(1);

      // The connection kept from waits still takes tries.
      const bystander = createLock(knex, uniqueKey('cap-free'));
      expect(await bystander.acquire({ block: false })).to.equal(true);
      expect(lockConnectionStats(knex).connections).to.be.at.most(2);
      await bystander.release();

      for (const holder of holders) await holder.release();
      expect(await Promise.all(results)).to.deep.equal([true, true, true]);
      expect(lockConnectionStats(knex)).to.include({ holds: 0, queued: 0, waiting: 0 });
    });

    it('with max: 2, three waits that keep their locks all acquire once their keys are free', async function () {
      this.timeout(20_000);
      const knex = await knexFor();
      configureLockConnections(knex, { max: 2 });
      const session = await openSession(dialect);
      cleanups.push(() => session.close());
      const keys = [uniqueKey('cap-keep-a'), uniqueKey('cap-keep-b'), uniqueKey('cap-keep-c')];
      const holders = keys.map((key) => createLock(session.target, key));
      for (const holder of holders) expect(await holder.acquire()).to.equal(true);

      const waiters = keys.map((key) => createLock(knex, key));
      cleanups.push(() => Promise.all(waiters.map((waiter) => waiter.close())));
      const results = waiters.map((waiter) => waiter.acquire({ timeout: 1_500 }));
      await until(
        'one wait on a lock connection, the others queued',
        () => lockConnectionStats(knex),
        (s) => s.waiting === 1 && s.queued >= 2,
      );
      for (const holder of holders) await holder.release();
      expect(await Promise.all(results)).to.deep.equal([true, true, true]);
      expect(lockConnectionStats(knex).holds).to.equal(3);
    });
  });
}

for (const kind of TARGET_KINDS.filter((k) => k.pooled)) {
  describe(`lock connection settings of ${kind.name}`, () => {
    const scope = lockConnectionScope(kind.dialect, async () => {
      if (kind.dialect === 'mysql') await ensureSideDatabase();
    });
    async function open(): Promise<object> {
      const opened = await kind.open();
      scope.cleanups.push(() => opened.close());
      return opened.target;
    }

    it('an unused lock connection closes after idleTimeout', async () => {
      const target = await open();
      configureLockConnections(target, { idleTimeout: 200 });
      const lock = createLock(target, uniqueKey('idle'));
      await lock.acquire();
      const [id] = await scope.inspector.holderIds(lock.actualKey);
      await lock.release();
      const released = performance.now();
      expect(lockConnectionStats(target).connections).to.equal(1);
      await until(
        'no lock connection',
        () => lockConnectionStats(target).connections,
        (n) => n === 0,
      );
      expect(performance.now() - released).to.be.at.least(150);
      await until(
        'the server session gone',
        () => scope.probe.exists(id!),
        (exists) => !exists,
      );
    });

    it('lock connections go where the connection setting says, from the next one opened', async () => {
      const target = await open();
      const url = await urlFor(kind.dialect);
      const tag = kind.dialect === 'postgres' ? uniqueTag('override') : SIDE_DATABASE;
      const first = createLock(target, uniqueKey('override'));
      await first.acquire();
      const [before] = await scope.inspector.holderIds(first.actualKey);
      expect(await scope.probe.tagOf(before!)).to.not.equal(tag);
      await first.release();
      await closeLockConnections(target);

      const settings =
        kind.dialect === 'postgres'
          ? { connectionString: url, application_name: tag }
          : mysqlConfig(url, { database: SIDE_DATABASE });
      configureLockConnections(target, { connection: settings });
      const second = createLock(target, uniqueKey('override'));
      await second.acquire();
      const [after] = await scope.inspector.holderIds(second.actualKey);
      expect(await scope.probe.tagOf(after!)).to.equal(tag);
      await second.release();
    });
  });
}

describe('lock connection settings given as a URL', () => {
  for (const { dialect, name } of DIALECTS) {
    it(`a URL in the connection setting is used for ${name} lock connections of a knex instance`, async () => {
      if (dialect === 'mysql') await ensureSideDatabase();
      const url = new URL(await urlFor(dialect));
      let tag: string;
      if (dialect === 'postgres') {
        tag = uniqueTag('url');
        url.searchParams.set('application_name', tag);
      } else {
        tag = SIDE_DATABASE;
        url.pathname = `/${SIDE_DATABASE}`;
      }
      const knex = await openKnex(dialect);
      const inspector = await openInspector(dialect);
      const probe = await openProbe(dialect);
      try {
        configureLockConnections(knex, { connection: url.toString() });
        const lock = createLock(knex, uniqueKey('url'));
        await lock.acquire();
        const [id] = await inspector.holderIds(lock.actualKey);
        expect(await probe.tagOf(id!)).to.equal(tag);
        await lock.release();
      } finally {
        await knex.destroy();
        expect(await inspector.leftovers()).to.deep.equal([]);
        await inspector.close();
        await probe.close();
      }
    });
  }
});

describe("PostgreSQL's lock table full", () => {
  it('acquire() rejects with ERR_DLOCK_LOCK_TABLE_FULL; other locks on the same lock connection stay held', async function () {
    this.timeout(20_000);
    const url = (await databaseUrls()).pg;
    const knex = await openKnex('postgres');
    const inspector = await openInspector('postgres');
    // New sessions cannot even start while the table is full: connect everything first.
    const filler = new pg.Client({ connectionString: url });
    filler.on('error', () => undefined);
    await filler.connect();
    let base = BigInt(Date.now()) * 1_000_000n;
    const CHUNK = 2_000n;
    /** Takes advisory locks until the server runs out of lock slots; resolves how many chunks. */
    async function fill(): Promise<number> {
      for (let chunk = 0; chunk < 100; chunk += 1) {
        try {
          await filler.query(
            'SELECT count(pg_try_advisory_lock(k)) FROM generate_series($1::int8, $2::int8) k',
            [base.toString(), (base + CHUNK - 1n).toString()],
          );
        } catch (err) {
          expect(err).to.have.property('code', '53200');
          return chunk;
        } finally {
          base += CHUNK;
        }
      }
      expect.fail('the lock table did not fill up');
    }

    let fillerEnded = false;
    try {
      const held = [uniqueKey('full-held'), uniqueKey('full-held')].map((key) =>
        createLock(knex, key),
      );
      // One after the other, so that both share one lock connection.
      for (const lock of held) expect(await lock.acquire()).to.equal(true);
      expect(lockConnectionStats(knex)).to.include({ connections: 1, holds: 2 });
      const [holderPid] = await inspector.holderIds(held[0]!.actualKey);

      const lock = createLock(knex, uniqueKey('full'));
      /** Fills the table and acquires; another session may free a slot meanwhile: then again. */
      async function rejectionWhileFull(acquire: () => Promise<boolean>): Promise<Error> {
        for (let attempt = 0; attempt < 10; attempt += 1) {
          await fill();
          let acquired: boolean;
          try {
            acquired = await acquire();
          } catch (err) {
            expect(err).to.have.property('code', 'ERR_DLOCK_LOCK_TABLE_FULL');
            return err as Error;
          }
          expect(acquired).to.equal(true);
          await lock.release();
        }
        expect.fail('other sessions kept freeing lock slots');
      }

      expect(await fill(), 'chunks taken before the table was full').to.be.greaterThan(0);
      const err = await rejectionWhileFull(() => lock.acquire({ block: false }));
      expect(err.message).to.include('max_locks_per_transaction');
      await rejectionWhileFull(() => lock.acquire({ timeout: 2_000 }));
      expect(lockConnectionStats(knex)).to.include({ connections: 1, holds: 2 });

      await filler.end();
      fillerEnded = true;
      for (const other of held) {
        expect(other.locked).to.equal(true);
        expect(other.signal!.aborted).to.equal(false);
        expect(await inspector.holderIds(other.actualKey)).to.deep.equal([holderPid]);
      }
      expect(lockConnectionStats(knex).connections).to.equal(1);
      expect(await lock.acquire({ block: false })).to.equal(true);
      expect(await inspector.holderIds(lock.actualKey)).to.deep.equal([holderPid]);
      await lock.release();
      for (const other of held) await other.release();
    } finally {
      if (!fillerEnded) await filler.end().catch(() => undefined);
      await knex.destroy();
      expect(await inspector.leftovers()).to.deep.equal([]);
      await inspector.close();
    }
  });
});

describe('configureLockConnections() validation', () => {
  let knex: Knex;
  before(async () => {
    knex = await openKnex('postgres');
  });
  after(() => knex.destroy());

  it('a max that is not a whole number of at least 1 throws ERR_DLOCK_INVALID_OPTION', () => {
    for (const max of [0, -1, 1.5, NaN, Infinity, '2', null]) {
      expectThrowCode(
        () => configureLockConnections(knex, { max: max as number }),
        'ERR_DLOCK_INVALID_OPTION',
      );
    }
  });

  it('an idleTimeout that is not a number of 0 ms or more throws ERR_DLOCK_INVALID_OPTION', () => {
    for (const idleTimeout of [-1, NaN, '100', null]) {
      expectThrowCode(
        () => configureLockConnections(knex, { idleTimeout: idleTimeout as number }),
        'ERR_DLOCK_INVALID_OPTION',
      );
    }
  });

  it('an unknown option, a bad connection or no options object throws ERR_DLOCK_INVALID_OPTION', () => {
    for (const options of [{ maxx: 2 }, { connection: 42 }, null, 'max=2']) {
      expectThrowCode(
        () => configureLockConnections(knex, options as never),
        'ERR_DLOCK_INVALID_OPTION',
      );
    }
  });

  it('on a single connection (pg.Client, mysql2 connection) it throws ERR_DLOCK_INVALID_OPTION', async () => {
    const urls = await databaseUrls();
    const client = new pg.Client({ connectionString: urls.pg });
    const conn = mysql.createConnection({ uri: urls.mysql });
    conn.on('error', () => undefined);
    try {
      for (const target of [client, conn]) {
        expectThrowCode(
          () => configureLockConnections(target, { max: 2 }),
          'ERR_DLOCK_INVALID_OPTION',
        );
        expectThrowCode(() => lockConnectionStats(target), 'ERR_DLOCK_INVALID_OPTION');
        expectThrowCode(() => closeLockConnections(target), 'ERR_DLOCK_INVALID_OPTION');
      }
    } finally {
      conn.destroy();
    }
  });

  it('an idleTimeout of 2^31 ms or more keeps an unused lock connection open', async () => {
    const target = await openKnex('postgres');
    const overflows: string[] = [];
    const onWarning = (warning: Error) => {
      if (warning.name === 'TimeoutOverflowWarning') overflows.push(warning.message);
    };
    process.on('warning', onWarning);
    try {
      try {
        configureLockConnections(target, { idleTimeout: 2 ** 31 });
      } catch (err) {
        // Refusing it is fine too.
        expect(err).to.have.property('code', 'ERR_DLOCK_INVALID_OPTION');
        return;
      }
      const lock = createLock(target, uniqueKey('idle-long'));
      await lock.acquire();
      await lock.release();
      // An overflowing timer fires after 1 ms; give it the chance to show.
      await sleep(50);
      expect(overflows).to.deep.equal([]);
      expect(lockConnectionStats(target).connections).to.equal(1);
    } finally {
      process.off('warning', onWarning);
      await target.destroy();
    }
  });

  it('valid settings are accepted', () => {
    configureLockConnections(knex, { max: 1, idleTimeout: 0 });
    configureLockConnections(knex, { max: 8, idleTimeout: 5_000, connection: 'postgres://x@y/z' });
    expect(lockConnectionStats(knex)).to.deep.equal({
      connections: 0,
      waiting: 0,
      holds: 0,
      queued: 0,
    });
  });
});
