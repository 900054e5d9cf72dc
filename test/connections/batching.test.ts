/**
 * Batches on a lock connection: tries and releases queued on one connection go as one
 * statement, and each caller still gets its own answer: a busy key, a fenced grant that cannot
 * take its token, a caller that gives up before or while its batch runs.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import knexFactory from 'knex';
import {
  configureLockConnections,
  createLock,
  lockConnectionStats,
  type BaseLock,
} from '../../src/index.js';
import { countTraffic, type QueryCall, type TrafficCounter } from '../support/counting.js';
import { expectRejectCode } from '../support/expect.js';
import { DIALECTS, lockConnectionScope, mysqlConfig } from '../support/lock-connections.js';
import { openSession, urlFor, type Session } from '../support/sessions.js';
import { openInspector, uniqueKey, type DialectName } from '../support/targets.js';

const BATCH_SIZE = 10;

/** Whether `call` is a batch: one statement over several keys. */
function isBatch(call: QueryCall): boolean {
  return /WITH ORDINALITY AS t\(k, s, r/.test(call.sql) || /_LOCK\(.*_LOCK\(/.test(call.sql);
}

/** The keys one batch statement carried (PostgreSQL: its key array; MySQL: its names). */
function keysOf(call: QueryCall, dialect: DialectName): number {
  if (dialect === 'mysql') return call.params?.length ?? 0;
  return String(call.params?.[0]).split(',').length;
}

/** Locks on distinct new keys, and the lock connection warmed up (open, statements prepared). */
async function warmedLocks(knex: Knex, count: number, label: string): Promise<BaseLock[]> {
  const warm = createLock(knex, uniqueKey(`${label}-warm`));
  const others = Array.from({ length: 2 }, () => createLock(knex, uniqueKey(`${label}-warm`)));
  expect(await warm.acquire({ block: false })).to.equal(true);
  // A batch of two, so that the batch statement is prepared too.
  expect(await Promise.all(others.map((lock) => lock.acquire({ block: false })))).to.deep.equal([
    true,
    true,
  ]);
  await Promise.all([warm, ...others].map((lock) => lock.release()));
  return Array.from({ length: count }, () => createLock(knex, uniqueKey(label)));
}

for (const { dialect, name } of DIALECTS) {
  describe(`batches on a lock connection on ${name}`, () => {
    const scope = lockConnectionScope(dialect);
    let other: Session;
    let counter: TrafficCounter;

    beforeEach(async () => {
      other = await openSession(dialect);
      scope.cleanups.push(() => other.close());
    });

    /** A knex instance with one lock connection, its traffic counted. */
    async function knexWithOneLockConnection(): Promise<Knex> {
      const knex = await scope.knexFor();
      configureLockConnections(knex, { max: 1 });
      counter = countTraffic(knex);
      scope.cleanups.push(async () => counter.detach());
      return knex;
    }

    /** Holds `key` on the other session until the test ends. */
    async function holdElsewhere(key: string): Promise<void> {
      const lock = createLock(other.target, key);
      expect(await lock.acquire({ block: false })).to.equal(true);
      scope.cleanups.push(() => lock.close());
    }

    it(`${BATCH_SIZE} tries queued at once cost one round trip and one statement, and so do their releases`, async () => {
      const knex = await knexWithOneLockConnection();
      const locks = await warmedLocks(knex, BATCH_SIZE, 'batch');
      const tried = await counter.measure(
        () => Promise.all(locks.map((lock) => lock.acquire({ block: false }))),
        0,
      );
      expect(tried.result).to.deep.equal(locks.map(() => true));
      // A MySQL statement is text, parsed every time; PostgreSQL's is prepared once.
      const parses = dialect === 'postgres' ? 0 : 1;
      expect(tried.counts).to.include({ roundTrips: 1, statements: 1, parses });
      expect(tried.calls.filter(isBatch).map((call) => keysOf(call, dialect))).to.deep.equal([
        BATCH_SIZE,
      ]);
      const holders = await scope.probe.holdersOf(locks.map((lock) => lock.actualKey));
      expect(holders).to.have.length(BATCH_SIZE);
      expect(new Set(holders).size, 'one lock connection holds them all').to.equal(1);

      const released = await counter.measure(
        () => Promise.all(locks.map((lock) => lock.release())),
        0,
      );
      expect(released.counts).to.include({ roundTrips: 1, statements: 1, parses });
      expect(await scope.probe.holdersOf(locks.map((lock) => lock.actualKey))).to.deep.equal([]);
    });

    it('the first tries on a new lock connection share its preparation, then go as one batch', async () => {
      const knex = await knexWithOneLockConnection();
      const locks = Array.from({ length: 6 }, () => createLock(knex, uniqueKey('first')));
      const { result, calls } = await counter.measure(
        () => Promise.all(locks.map((lock) => lock.acquire({ block: false }))),
        0,
      );
      expect(result).to.deep.equal(locks.map(() => true));
      const preparations = calls.filter((call) =>
        /pg_is_in_recovery|@@global\.read_only/.test(call.sql),
      );
      expect(preparations, 'one check of the server').to.have.length(1);
      expect(calls.filter(isBatch).length, 'batches').to.be.at.least(1);
      await Promise.all(locks.map((lock) => lock.release()));
    });

    it('blocking acquires made together on free keys join one batch instead of each waiting on a connection', async () => {
      const knex = await scope.knexFor();
      counter = countTraffic(knex);
      scope.cleanups.push(async () => counter.detach());
      const locks = await warmedLocks(knex, 8, 'together');
      const { result, counts, calls } = await counter.measure(
        () => Promise.all(locks.map((lock) => lock.acquire())),
        0,
      );
      expect(result).to.deep.equal(locks.map(() => true));
      expect(counts).to.include({ roundTrips: 1, statements: 1, connectionsOpened: 0 });
      expect(calls.filter(isBatch).map((call) => keysOf(call, dialect))).to.deep.equal([8]);
      expect(lockConnectionStats(knex)).to.include({ connections: 1, holds: 8, waiting: 0 });
      await Promise.all(locks.map((lock) => lock.release()));
    });

    it('a lone try is sent at once, as its own statement', async () => {
      const knex = await knexWithOneLockConnection();
      const [lock] = await warmedLocks(knex, 1, 'lone');
      const { counts, calls } = await counter.measure(() => lock!.acquire({ block: false }), 0);
      expect(counts).to.include({ roundTrips: 1, statements: 1 });
      expect(calls.filter(isBatch)).to.deep.equal([]);
      await lock!.release();
    });

    it('mixed outcomes in one batch: keys held elsewhere answer false, the others are granted', async () => {
      const knex = await knexWithOneLockConnection();
      const locks = await warmedLocks(knex, 8, 'mixed');
      const busy = new Set([1, 4, 7]);
      for (const i of busy) await holdElsewhere(String(locks[i]!.key));
      const { result, counts } = await counter.measure(
        () => Promise.all(locks.map((lock) => lock.acquire({ block: false }))),
        0,
      );
      expect(result).to.deep.equal(locks.map((_, i) => !busy.has(i)));
      expect(counts).to.include({ roundTrips: 1, statements: 1 });
      for (const [i, lock] of locks.entries()) expect(lock.locked).to.equal(!busy.has(i));
      await Promise.all(locks.filter((lock) => lock.locked).map((lock) => lock.release()));
    });

    if (dialect === 'postgres') {
      it('shared and exclusive tries in one batch: each is granted or refused by its own mode', async () => {
        const knex = await knexWithOneLockConnection();
        const [sharedHere, exclusiveHere, free] = await warmedLocks(knex, 3, 'modes');
        const heldShared = createLock(other.target, String(sharedHere!.key), { shared: true });
        expect(await heldShared.acquire({ block: false })).to.equal(true);
        scope.cleanups.push(() => heldShared.close());
        // exclusiveHere's key is held shared elsewhere too.
        const alsoShared = createLock(other.target, String(exclusiveHere!.key), { shared: true });
        expect(await alsoShared.acquire({ block: false })).to.equal(true);
        scope.cleanups.push(() => alsoShared.close());
        const shared = createLock(knex, String(sharedHere!.key), { shared: true });
        const { result, counts } = await counter.measure(
          () =>
            Promise.all([
              shared.acquire({ block: false }),
              exclusiveHere!.acquire({ block: false }),
              free!.acquire({ block: false }),
            ]),
          0,
        );
        expect(result).to.deep.equal([true, false, true]);
        expect(counts).to.include({ roundTrips: 1, statements: 1 });
        await Promise.all([shared.release(), free!.release()]);
      });
    }

    it('a try given up before its batch is sent takes nothing; the others are granted', async () => {
      const knex = await knexWithOneLockConnection();
      const locks = await warmedLocks(knex, 5, 'abort-before');
      const controller = new AbortController();
      const reason = new Error('given up');
      const { result, calls } = await counter.measure(async () => {
        const acquiring = locks.map((lock, i) =>
          lock.acquire({ block: false, ...(i === 2 ? { signal: controller.signal } : {}) }),
        );
        // Before the batch goes: it leaves within microtasks, not within this synchronous turn.
        controller.abort(reason);
        return Promise.allSettled(acquiring);
      }, 0);
      expect(result.map((outcome) => outcome.status)).to.deep.equal([
        'fulfilled',
        'fulfilled',
        'rejected',
        'fulfilled',
        'fulfilled',
      ]);
      expect((result[2] as PromiseRejectedResult).reason).to.equal(reason);
      expect(calls.filter(isBatch).map((call) => keysOf(call, dialect))).to.deep.equal([4]);
      expect(locks[2]!.locked).to.equal(false);
      expect(await scope.inspector.holders(locks[2]!.actualKey)).to.equal(0);
      await Promise.all(locks.filter((lock) => lock.locked).map((lock) => lock.release()));
    });

    it('a try given up while its batch runs has its grant undone; the others keep theirs', async () => {
      const knex = await knexWithOneLockConnection();
      const locks = await warmedLocks(knex, 5, 'abort-during');
      const controller = new AbortController();
      const reason = new Error('given up');
      let sentWhole = false;
      // The batch is with the driver, and no answer can have come: answers arrive as I/O.
      counter.onSent = (call) => {
        if (!isBatch(call) || controller.signal.aborted) return;
        sentWhole = keysOf(call, dialect) === locks.length;
        controller.abort(reason);
      };
      const outcomes = await Promise.allSettled(
        locks.map((lock, i) =>
          lock.acquire({ block: false, ...(i === 2 ? { signal: controller.signal } : {}) }),
        ),
      );
      counter.onSent = undefined;
      expect(sentWhole, 'the aborted try was in the batch').to.equal(true);
      expect(outcomes.map((outcome) => outcome.status)).to.deep.equal([
        'fulfilled',
        'fulfilled',
        'rejected',
        'fulfilled',
        'fulfilled',
      ]);
      expect((outcomes[2] as PromiseRejectedResult).reason).to.equal(reason);
      expect(await scope.inspector.holders(locks[2]!.actualKey)).to.equal(0);
      for (const i of [0, 1, 3, 4]) {
        expect(await scope.inspector.holders(locks[i]!.actualKey)).to.equal(1);
      }
      await Promise.all(locks.filter((lock) => lock.locked).map((lock) => lock.release()));
    });
  });
}

/** A user who may lock but may not take fencing tokens (no USAGE, no table rights). */
const NO_TOKENS_USER = 'dlock_batch_no_tokens';
const NO_TOKENS_PASSWORD = 'batch-no-tokens';

describe('a fenced try in a batch whose token cannot be taken', () => {
  const admins: Partial<Record<DialectName, Session>> = {};

  async function dropUsers(): Promise<void> {
    const pgAdmin = admins.postgres!;
    const roles = await pgAdmin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [
      NO_TOKENS_USER,
    ]);
    if (roles.length > 0) await pgAdmin.query(`DROP OWNED BY ${NO_TOKENS_USER}`);
    await pgAdmin.query(`DROP ROLE IF EXISTS ${NO_TOKENS_USER}`);
    await admins.mysql!.query(`DROP USER IF EXISTS '${NO_TOKENS_USER}'@'%'`);
  }

  before(async () => {
    admins.postgres = await openSession('postgres');
    admins.mysql = await openSession('mysql');
    await dropUsers();
    await admins.postgres.query(`CREATE ROLE ${NO_TOKENS_USER} LOGIN`);
    const database = new URL(await urlFor('mysql')).pathname.slice(1);
    await admins.mysql.query(
      `CREATE USER '${NO_TOKENS_USER}'@'%' IDENTIFIED BY '${NO_TOKENS_PASSWORD}'`,
    );
    await admins.mysql.query(`GRANT SELECT ON \`${database}\`.* TO '${NO_TOKENS_USER}'@'%'`);
  });

  after(async () => {
    await dropUsers();
    await Promise.all(Object.values(admins).map((admin) => admin.close()));
  });

  async function knexAsNoTokensUser(dialect: DialectName): Promise<Knex> {
    const url = new URL(await urlFor(dialect));
    url.username = NO_TOKENS_USER;
    url.password = dialect === 'mysql' ? NO_TOKENS_PASSWORD : '';
    return knexFactory({
      client: dialect === 'postgres' ? 'pg' : 'mysql2',
      connection: dialect === 'postgres' ? { connectionString: url.href } : mysqlConfig(url.href),
      pool: { min: 0, max: 2 },
    });
  }

  for (const { dialect, name } of DIALECTS) {
    it(`on ${name}: it alone rejects with ERR_DLOCK_FENCING_UNAVAILABLE and keeps nothing; the others are granted`, async () => {
      const knex = await knexAsNoTokensUser(dialect);
      configureLockConnections(knex, { max: 1 });
      const counter = countTraffic(knex);
      const inspector = await openInspector(dialect);
      try {
        const locks = await warmedLocks(knex, 4, 'fenced-batch');
        const fenced = createLock(knex, String(locks[1]!.key), { fencing: true });
        const tries = [locks[0]!, fenced, locks[2]!, locks[3]!];
        const { result: outcomes, calls } = await counter.measure(
          () => Promise.allSettled(tries.map((lock) => lock.acquire({ block: false }))),
          0,
        );
        expect(calls.filter(isBatch).map((call) => keysOf(call, dialect))).to.deep.equal([4]);
        expect(outcomes.map((outcome) => outcome.status)).to.deep.equal([
          'fulfilled',
          'rejected',
          'fulfilled',
          'fulfilled',
        ]);
        expect((outcomes[1] as PromiseRejectedResult).reason).to.have.property(
          'code',
          'ERR_DLOCK_FENCING_UNAVAILABLE',
        );
        expect(fenced.locked).to.equal(false);
        expect(await inspector.holders(fenced.actualKey), 'the fenced key').to.equal(0);
        for (const lock of [locks[0]!, locks[2]!, locks[3]!]) {
          expect(await inspector.holders(lock.actualKey), 'an unfenced key').to.equal(1);
        }
        await expectRejectCode(fenced.release(), 'ERR_DLOCK_NOT_HELD');
        await Promise.all([locks[0]!, locks[2]!, locks[3]!].map((lock) => lock.release()));
      } finally {
        counter.detach();
        await knex.destroy();
        expect(await inspector.leftovers()).to.deep.equal([]);
        await inspector.close();
      }
    });
  }
});
