/**
 * The performance budget, asserted by counting what reaches the wire (not by timing): one round
 * trip per acquire and per release, nothing sent while a lock waits, and no new pooled
 * connection per lock.
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import mysqlCallback from 'mysql2';
import mysqlPromise from 'mysql2/promise';
import pg from 'pg';
import { createLock, type BaseLock, type LockOptions } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { acquireEachWay, sleep } from './support/expect.js';
import { countTraffic, type QueryCall, type TrafficCounter } from './support/counting.js';
import { watchLockWaits, type LockWaitWatcher } from './support/server-state.js';
import {
  openInspector,
  TARGET_KINDS,
  uniqueKey,
  type DialectName,
  type LockInspector,
  type OpenTarget,
  type TargetKind,
} from './support/targets.js';

/** How long the "nothing sent while waiting" tests watch a wait. */
const WAIT_MS = 1_500;

function sent(calls: readonly QueryCall[]): string {
  return calls.length ? `sent: ${calls.map((call) => call.sql).join(' | ')}` : 'sent nothing';
}

/** Measures `fn` on `counter` and asserts its round trips; returns fn's result. */
async function expectRoundTrips<T>(
  counter: TrafficCounter,
  expected: number,
  fn: () => Promise<T>,
): Promise<T> {
  const { result, counts, calls } = await counter.measure(fn);
  expect(counts.roundTrips, sent(calls)).to.equal(expected);
  return result;
}

/** Connections a pool target has open now (idle or lent), from the pool's own counters. */
function poolSize(target: object): number {
  const knexPool = (target as Knex).client?.pool as
    { numFree(): number; numUsed(): number; numPendingCreates(): number } | undefined;
  if (typeof target === 'function' && knexPool) {
    return knexPool.numFree() + knexPool.numUsed() + knexPool.numPendingCreates();
  }
  if (target instanceof pg.Pool) return target.totalCount;
  const inner = (target as { pool?: object }).pool ?? target;
  return (inner as { _allConnections: { length: number } })._allConnections.length;
}

describe('traffic counter', function () {
  let pgClient: pg.Client;
  let mysqlConn: mysqlCallback.Connection;

  before(async () => {
    const urls = await databaseUrls();
    pgClient = new pg.Client({ connectionString: urls.pg });
    await pgClient.connect();
    mysqlConn = mysqlCallback.createConnection({ uri: urls.mysql });
    await mysqlConn.promise().query('SELECT 1');
  });

  after(async () => {
    await pgClient.end();
    await mysqlConn.promise().end();
  });

  it('counts a pg multi-statement simple query as one round trip of two statements', async () => {
    const counter = countTraffic(pgClient);
    try {
      const { counts } = await counter.measure(() => pgClient.query('SELECT 1; SELECT 2'), 0);
      expect(counts).to.include({ roundTrips: 1, statements: 2, queryCalls: 1 });
    } finally {
      counter.detach();
    }
  });

  it('counts a parameterised pg query as one round trip', async () => {
    const counter = countTraffic(pgClient);
    try {
      const { counts } = await counter.measure(() => pgClient.query('SELECT $1::int', [1]), 0);
      expect(counts).to.include({ roundTrips: 1, statements: 1 });
      expect(counts.messages).to.be.at.least(4);
    } finally {
      counter.detach();
    }
  });

  it('counts the Parse of a named pg statement once, and every simple query', async () => {
    const counter = countTraffic(pgClient);
    const named = { name: `counted_${Date.now()}`, text: 'SELECT $1::int AS n' };
    try {
      const first = await counter.measure(() => pgClient.query({ ...named, values: [1] }), 0);
      expect(first.counts).to.include({ roundTrips: 1, parses: 1 });
      const again = await counter.measure(() => pgClient.query({ ...named, values: [2] }), 0);
      expect(again.counts).to.include({ roundTrips: 1, parses: 0 });
      const simple = await counter.measure(() => pgClient.query('SELECT 1; SELECT 2'), 0);
      expect(simple.counts).to.include({ roundTrips: 1, parses: 1 });
    } finally {
      counter.detach();
    }
  });

  it('counts two pg queries queued at once as two round trips', async () => {
    const counter = countTraffic(pgClient);
    try {
      const { counts } = await counter.measure(
        () => Promise.all([pgClient.query('SELECT 1'), pgClient.query('SELECT $1::int', [2])]),
        0,
      );
      expect(counts).to.include({ roundTrips: 2, statements: 2, queryCalls: 2 });
    } finally {
      counter.detach();
    }
  });

  it('counts a first mysql2 execute() as two round trips (prepare, execute)', async () => {
    const counter = countTraffic(mysqlConn);
    const sql = `SELECT ? + ${Date.now()} AS n`;
    try {
      const first = await counter.measure(() => mysqlConn.promise().execute(sql, [1]), 0);
      expect(first.counts).to.include({ roundTrips: 2, statements: 1 });
      const second = await counter.measure(() => mysqlConn.promise().execute(sql, [2]), 0);
      expect(second.counts).to.include({ roundTrips: 1, statements: 1 });
      const multi = await counter.measure(() => mysqlConn.promise().query('SELECT 1'), 0);
      expect(multi.counts).to.include({ roundTrips: 1, statements: 1, queryCalls: 1 });
    } finally {
      counter.detach();
    }
  });

  it('counts nothing on a connection it does not watch', async () => {
    const counter = countTraffic(mysqlConn);
    try {
      const { counts } = await counter.measure(() => pgClient.query('SELECT 1'), 0);
      expect(counts).to.include({ roundTrips: 0, messages: 0 });
    } finally {
      counter.detach();
    }
  });

  it('counts the connections a pool opens', async () => {
    const pool = new pg.Pool({ connectionString: (await databaseUrls()).pg, max: 2 });
    const counter = countTraffic(pool);
    try {
      const { counts } = await counter.measure(async () => {
        const [a, b] = await Promise.all([pool.connect(), pool.connect()]);
        await a.query('SELECT 1');
        a.release();
        b.release();
      }, 0);
      expect(counts).to.include({ connectionsOpened: 2, roundTrips: 1 });
    } finally {
      counter.detach();
      await pool.end();
    }
  });
});

/** Opens targets and locks for one test and closes them after it, checking nothing stays held. */
function testScope(dialect: DialectName, defaults: LockOptions = {}) {
  let inspector: LockInspector;
  let waits: LockWaitWatcher;
  const closers: (() => Promise<void>)[] = [];
  const locks: BaseLock[] = [];

  before(async () => {
    inspector = await openInspector(dialect);
    waits = await watchLockWaits(dialect);
  });

  after(async () => {
    await inspector.close();
    await waits.close();
  });

  afterEach(async () => {
    await Promise.all(locks.splice(0).map((lock) => lock.close().catch(() => undefined)));
    for (const close of closers.splice(0).reverse()) await close();
    const leftovers = await inspector.leftovers();
    expect(leftovers, 'locks left held after the test').to.deep.equal([]);
  });

  return {
    /** Resolves once `lock` waits in the database, seen from a connection that is not counted. */
    async waitingInDatabase(lock: BaseLock): Promise<void> {
      await waits.waitFor(lock.actualKey);
    },
    onClose(close: () => Promise<void>) {
      closers.push(close);
    },
    async open(kind: TargetKind): Promise<object> {
      const opened: OpenTarget = await kind.open();
      closers.push(() => opened.close());
      return opened.target;
    },
    lock(target: object, key: string, options?: LockOptions): BaseLock {
      const lock = createLock(target, key, { ...defaults, ...options });
      locks.push(lock);
      return lock;
    },
  };
}

/** Pools are measured in both connection modes that share or reuse connections. */
const BUDGET_CASES = TARGET_KINDS.filter((kind) => kind.wire).flatMap<{
  kind: TargetKind;
  connection: 'multiplexed' | 'pool' | undefined;
}>((kind) =>
  kind.pooled
    ? (['multiplexed', 'pool'] as const).map((connection) => ({ kind, connection }))
    : [{ kind, connection: undefined }],
);

// The budget is counted at the socket, and pg's native client writes through libpq, whose socket
// JavaScript never sees: those kinds are skipped here, visibly, and tested for behaviour elsewhere.
for (const kind of TARGET_KINDS.filter((k) => !k.wire)) {
  describe(`round-trip budget on ${kind.name}`, () => {
    it.skip(`not counted on ${kind.name}: libpq's socket cannot be watched`);
  });
}

for (const { kind, connection } of BUDGET_CASES) {
  const name = connection ? `${kind.name}, connection: '${connection}'` : kind.name;
  describe(`round-trip budget on ${name}`, function () {
    this.timeout(20_000);
    const scope = testScope(kind.dialect, connection ? { connection } : {});
    let target: object;
    let counter: TrafficCounter;

    /** A holder of `key` on a separate session, whose traffic is not counted. */
    async function holdElsewhere(key: string): Promise<BaseLock> {
      const holder = scope.lock(await scope.open(kind), key);
      expect(await holder.acquire({ block: false })).to.equal(true);
      return holder;
    }

    beforeEach(async () => {
      target = await scope.open(kind);
      counter = countTraffic(target);
      scope.onClose(async () => counter.detach());
      // Connects (or fills the pool with one idle connection), so that only locks are measured.
      const warm = scope.lock(target, uniqueKey('warm'));
      await warm.acquire({ block: false });
      await warm.release();
    });

    it(`a try acquire costs one round trip on ${kind.name}`, async () => {
      const lock = scope.lock(target, uniqueKey());
      expect(await expectRoundTrips(counter, 1, () => lock.acquire({ block: false }))).to.equal(
        true,
      );
    });

    it(`a wait-forever acquire costs one round trip on ${kind.name}`, async () => {
      const lock = scope.lock(target, uniqueKey());
      expect(await expectRoundTrips(counter, 1, () => lock.acquire())).to.equal(true);
    });

    it(`a timed acquire costs one round trip on ${kind.name}`, async () => {
      const lock = scope.lock(target, uniqueKey());
      expect(await expectRoundTrips(counter, 1, () => lock.acquire({ timeout: 1_000 }))).to.equal(
        true,
      );
    });

    it(`release() costs one round trip on ${kind.name}`, async () => {
      const lock = scope.lock(target, uniqueKey());
      await lock.acquire();
      await expectRoundTrips(counter, 1, () => lock.release());
      expect(lock.locked).to.equal(false);
    });

    it(`a timed-out acquire costs one round trip on ${kind.name}`, async () => {
      const key = uniqueKey();
      await holdElsewhere(key);
      const waiter = scope.lock(target, key);
      expect(await expectRoundTrips(counter, 1, () => waiter.acquire({ timeout: 200 }))).to.equal(
        false,
      );
    });

    it(`a timed acquire sends nothing while it waits on ${kind.name}`, async () => {
      const key = uniqueKey();
      await holdElsewhere(key);
      const waiter = scope.lock(target, key);
      const waiting = waiter.acquire({ timeout: WAIT_MS });
      await scope.waitingInDatabase(waiter);
      // Most of the wait is watched: a long quiet time is what this test asserts.
      const { counts, calls } = await counter.measure(() => sleep(WAIT_MS - 250), 0);
      expect(counts, sent(calls)).to.include({ roundTrips: 0, messages: 0 });
      expect(await waiting).to.equal(false);
    });

    it(`a wait-forever acquire that waits costs one round trip in all on ${kind.name}`, async () => {
      const key = uniqueKey();
      const holder = await holdElsewhere(key);
      const waiter = scope.lock(target, key);
      const acquired = await expectRoundTrips(counter, 1, async () => {
        const waiting = waiter.acquire();
        await scope.waitingInDatabase(waiter);
        // A long wait: a wait that polled would send more than one round trip in this time.
        await sleep(WAIT_MS);
        expect(waiter.locked).to.equal(false);
        await holder.release();
        return waiting;
      });
      expect(acquired).to.equal(true);
    });

    if (kind.dialect === 'postgres') {
      it(`a warmed-up cycle makes the server parse nothing on ${kind.name}`, async () => {
        const cycle = () => acquireEachWay(scope.lock(target, uniqueKey()));
        await cycle();
        const { counts, calls } = await counter.measure(cycle);
        expect(counts, sent(calls)).to.include({ roundTrips: 6, parses: 0 });
      });

      it(`preparedStatements: false parses every statement on ${kind.name}`, async () => {
        const lock = scope.lock(target, uniqueKey(), { preparedStatements: false });
        const { counts } = await counter.measure(async () => {
          for (let i = 0; i < 2; i += 1) {
            expect(await lock.acquire({ block: false })).to.equal(true);
            await lock.release();
          }
        });
        expect(counts).to.include({ roundTrips: 4, parses: 4 });
      });
    }

    if (kind.pooled) {
      it(`locks on ${kind.name} reuse its idle connection instead of opening one`, async () => {
        const sizeBefore = poolSize(target);
        const { counts } = await counter.measure(async () => {
          for (let i = 0; i < 5; i += 1) {
            const lock = scope.lock(target, uniqueKey());
            await lock.acquire();
            await lock.release();
          }
        });
        expect(counts.connectionsOpened).to.equal(0);
        expect(counts.roundTrips).to.equal(10);
        expect(poolSize(target)).to.equal(sizeBefore);
      });

      it(`the first lock on an empty ${kind.name} opens exactly one connection`, async () => {
        const fresh = await scope.open(kind);
        const freshCounter = countTraffic(fresh);
        scope.onClose(async () => freshCounter.detach());
        const lock = scope.lock(fresh, uniqueKey());
        const { counts } = await freshCounter.measure(() => lock.acquire());
        // The acquire and, once per connection, the check that the server's locks are not
        // local to it (a standby, a replica, a Galera node). On a connection of the library's
        // own the same round trip sets its bound on silent faults on PostgreSQL; MySQL needs a
        // statement of its own for that. A connection of the application's pool is left as it is.
        const bound = connection === 'pool' || kind.dialect === 'postgres' ? 0 : 1;
        const roundTrips = 2 + bound;
        expect(counts).to.include({ connectionsOpened: 1, roundTrips });
        expect(freshCounter.connections).to.equal(1);
      });
    } else {
      it(`a timed-out acquire leaves the session settings as they were on ${kind.name}`, async () => {
        const key = uniqueKey();
        await holdElsewhere(key);
        const session = kind.dialect === 'postgres' ? pgSettings(target) : mysqlSettings(target);
        const before = await session();
        expect(await scope.lock(target, key).acquire({ timeout: 100 })).to.equal(false);
        expect(await session()).to.deep.equal(before);
      });
    }
  });
}

/** The session settings a PostgreSQL wait may touch, after setting them to unusual values. */
function pgSettings(target: object): () => Promise<unknown> {
  const client = target as pg.Client;
  let prepared = false;
  return async () => {
    if (!prepared) {
      await client.query("SET lock_timeout = '7s'; SET statement_timeout = '9s'");
      prepared = true;
    }
    const { rows } = await client.query(
      "SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS statement",
    );
    return rows[0];
  };
}

function mysqlSettings(target: object): () => Promise<unknown> {
  const inner = (target as { connection?: mysqlCallback.Connection }).connection;
  const conn = inner && 'threadId' in inner ? inner : (target as mysqlCallback.Connection);
  return async () => {
    const [rows] = await conn
      .promise()
      .query<mysqlPromise.RowDataPacket[]>(
        'SELECT @@session.lock_wait_timeout AS lockWait, @@session.max_statement_time AS maxTime',
      );
    return rows[0];
  };
}

interface TransactionKind {
  readonly name: string;
  readonly dialect: DialectName;
  /** The holder's kind: a separate session that takes the lock first. */
  readonly holder: TargetKind;
  /** Opens a target inside a transaction; `end` rolls it back and closes everything. */
  open(): Promise<{ target: object; counter: TrafficCounter; end(): Promise<void> }>;
  /** Checks that the transaction still accepts statements. */
  usable(target: object): Promise<void>;
}

const kindNamed = (name: string): TargetKind => {
  const kind = TARGET_KINDS.find((k) => k.name === name);
  if (!kind) throw new Error(`no target kind ${name}`);
  return kind;
};

function knexTransactionKind(client: 'pg' | 'mysql2'): TransactionKind {
  const dialect: DialectName = client === 'pg' ? 'postgres' : 'mysql';
  return {
    name: `a knex transaction (${client})`,
    dialect,
    holder: kindNamed(client === 'pg' ? 'pg.Client' : 'mysql2 connection'),
    async open() {
      const urls = await databaseUrls();
      const knex = knexFactory({
        client,
        connection: client === 'pg' ? urls.pg : urls.mysql,
        pool: { min: 0, max: 2 },
      });
      const counter = countTraffic(knex);
      const trx = await knex.transaction();
      await trx.raw('SELECT 1');
      return {
        target: trx,
        counter,
        async end() {
          if (!trx.isCompleted()) await trx.rollback().catch(() => undefined);
          counter.detach();
          await knex.destroy();
        },
      };
    },
    async usable(target) {
      await (target as Knex.Transaction).raw('SELECT 1');
    },
  };
}

const TRANSACTION_KINDS: readonly TransactionKind[] = [
  knexTransactionKind('pg'),
  knexTransactionKind('mysql2'),
  {
    name: 'a pg.Client inside BEGIN',
    dialect: 'postgres',
    holder: kindNamed('pg.Client'),
    async open() {
      const client = new pg.Client({ connectionString: (await databaseUrls()).pg });
      await client.connect();
      const counter = countTraffic(client);
      await client.query('BEGIN');
      return {
        target: client,
        counter,
        async end() {
          await client.query('ROLLBACK').catch(() => undefined);
          counter.detach();
          await client.end();
        },
      };
    },
    async usable(target) {
      await (target as pg.Client).query('SELECT 1');
    },
  },
];

for (const kind of TRANSACTION_KINDS) {
  const modes = kind.dialect === 'postgres' ? [false, true] : [false];
  for (const xact of modes) {
    const level = xact ? 'transaction-level' : 'session-level';
    describe(`round-trip budget for a ${level} lock in ${kind.name}`, function () {
      this.timeout(20_000);
      const scope = testScope(kind.dialect);
      let target: object;
      let counter: TrafficCounter;
      const options: LockOptions = { xact };

      beforeEach(async () => {
        const opened = await kind.open();
        target = opened.target;
        counter = opened.counter;
        scope.onClose(() => opened.end());
        // The first lock on a connection checks, once, that its server's locks are not local
        // to it; only locks after that are measured.
        const warm = scope.lock(target, uniqueKey('warm'));
        await warm.acquire({ block: false });
        await warm.release();
      });

      it(`a try acquire costs one round trip in ${kind.name}`, async () => {
        const lock = scope.lock(target, uniqueKey(), options);
        expect(await expectRoundTrips(counter, 1, () => lock.acquire({ block: false }))).to.equal(
          true,
        );
      });

      it(`a wait-forever acquire costs one round trip in ${kind.name}`, async () => {
        const lock = scope.lock(target, uniqueKey(), options);
        expect(await expectRoundTrips(counter, 1, () => lock.acquire())).to.equal(true);
      });

      it(`a timed acquire costs one round trip in ${kind.name}`, async () => {
        const lock = scope.lock(target, uniqueKey(), options);
        expect(await expectRoundTrips(counter, 1, () => lock.acquire({ timeout: 1_000 }))).to.equal(
          true,
        );
      });

      if (!xact) {
        it(`release() costs one round trip in ${kind.name}`, async () => {
          const lock = scope.lock(target, uniqueKey(), options);
          await lock.acquire();
          await expectRoundTrips(counter, 1, () => lock.release());
        });
      }

      if (kind.dialect === 'postgres') {
        // A wait inside a transaction is a savepoint script, parsed each time; see the README.
        it(`a warmed-up ${xact ? 'try parses' : 'try and release parse'} nothing in ${kind.name}`, async () => {
          const cycle = async () => {
            const lock = scope.lock(target, uniqueKey(), options);
            expect(await lock.acquire({ block: false })).to.equal(true);
            if (!xact) await lock.release();
          };
          await cycle();
          const { counts, calls } = await counter.measure(cycle);
          expect(counts, sent(calls)).to.include({ roundTrips: xact ? 1 : 2, parses: 0 });
        });
      }

      it(`a timed-out acquire costs at most one extra round trip and sends nothing while waiting in ${kind.name}`, async () => {
        const key = uniqueKey();
        const holder = scope.lock(await scope.open(kind.holder), key);
        expect(await holder.acquire({ block: false })).to.equal(true);
        const waiter = scope.lock(target, key, options);
        const { result, counts, calls } = await counter.measure(async () => {
          const waiting = waiter.acquire({ timeout: 600 });
          await scope.waitingInDatabase(waiter);
          // Most of the wait is watched: a long quiet time is what this test asserts.
          const during = await counter.measure(() => sleep(400), 0);
          expect(during.counts, sent(during.calls)).to.include({ roundTrips: 0, messages: 0 });
          return waiting;
        });
        expect(result).to.equal(false);
        expect(counts.roundTrips, sent(calls)).to.be.at.most(2);
        await kind.usable(target);
      });
    });
  }
}
