/**
 * With `connection: 'pool'`, a lock waiting for a pool connection obeys its timeout and signal
 * like a lock wait does.
 */
import { expect } from 'chai';
import knexFactory from 'knex';
import mysql from 'mysql2';
import pg from 'pg';
import { knexDriver, type KnexLike } from '../../src/drivers/knex.js';
import { createLock, PoolTimeoutError } from '../../src/index.js';
import { databaseUrls } from '../support/databases.js';
import { expectRejectCode } from '../support/expect.js';
import { until } from '../support/server-state.js';
import { uniqueKey } from '../support/targets.js';

const POOL = { connection: 'pool' } as const;

interface OpenPool {
  readonly target: object;
  /** Connections lent out, from the pool's own counters. */
  checkedOut(): number;
  /** Callers waiting for a connection, from the pool's own counters. */
  waiting(): number;
  close(): Promise<void>;
}

interface OnePool {
  readonly name: string;
  open(): Promise<OpenPool>;
}

/** Waits until the pool has `n` callers waiting for a connection. */
function waitersOf(pool: OpenPool, n: number): Promise<number> {
  return until('callers waiting for a connection', pool.waiting, (count) => count === n);
}

/**
 * Waits until the pool has every connection back and nobody waiting for one: a connection that
 * arrives for a wait that gave up meanwhile, or that was destroyed, goes back asynchronously.
 */
function allGivenBack(pool: OpenPool): Promise<unknown> {
  return until(
    'connections checked out and callers waiting',
    () => ({ checkedOut: pool.checkedOut(), waiting: pool.waiting() }),
    (counts) => counts.checkedOut === 0 && counts.waiting === 0,
  );
}

const POOLS_OF_ONE: OnePool[] = [
  {
    name: 'knex (pg)',
    async open() {
      const knex = knexFactory({
        client: 'pg',
        connection: (await databaseUrls()).pg,
        pool: { min: 0, max: 1 },
      });
      return {
        target: knex,
        checkedOut: () => knex.client.pool.numUsed(),
        waiting: () => knex.client.pool.numPendingAcquires(),
        close: () => knex.destroy(),
      };
    },
  },
  {
    name: 'pg.Pool',
    async open() {
      const pool = new pg.Pool({ connectionString: (await databaseUrls()).pg, max: 1 });
      return {
        target: pool,
        checkedOut: () => pool.totalCount - pool.idleCount,
        waiting: () => pool.waitingCount,
        close: () => pool.end(),
      };
    },
  },
  {
    name: 'mysql2 pool',
    async open() {
      const pool = mysql.createPool({ uri: (await databaseUrls()).mysql, connectionLimit: 1 });
      const internals = pool as unknown as {
        _allConnections: unknown[];
        _freeConnections: unknown[];
        _connectionQueue: unknown[];
      };
      return {
        target: pool,
        checkedOut: () => internals._allConnections.length - internals._freeConnections.length,
        waiting: () => internals._connectionQueue.length,
        close: () => new Promise<void>((resolve) => pool.end(() => resolve())),
      };
    },
  },
];

for (const kind of POOLS_OF_ONE) {
  describe(`waiting for a connection from a pool of one (${kind.name})`, () => {
    it('a timed acquire resolves false on time while the only connection is busy', async () => {
      const pool = await kind.open();
      try {
        const busy = createLock(pool.target, uniqueKey(), POOL);
        await busy.acquire();
        const started = performance.now();
        expect(await createLock(pool.target, uniqueKey(), POOL).acquire({ timeout: 300 })).to.equal(
          false,
        );
        expect(performance.now() - started).to.be.within(290, 600);
        await busy.release();
        await allGivenBack(pool);
      } finally {
        await pool.close();
      }
    });

    it('close() while waiting for a connection cancels the acquire and leaks nothing', async () => {
      const pool = await kind.open();
      try {
        const busy = createLock(pool.target, uniqueKey(), POOL);
        await busy.acquire();
        const waiter = createLock(pool.target, uniqueKey(), POOL);
        const waiting = waiter.acquire();
        await waitersOf(pool, 1);
        await waiter.close();
        let caught: unknown;
        await waiting.catch((err: unknown) => (caught = err));
        expect(caught).to.have.property('code', 'ERR_DLOCK_NOT_HELD');
        await busy.release();
        await allGivenBack(pool);
      } finally {
        await pool.close();
      }
    });

    it('an abort while waiting for a connection rejects at once and leaks nothing', async () => {
      const pool = await kind.open();
      try {
        const busy = createLock(pool.target, uniqueKey(), POOL);
        await busy.acquire();
        const controller = new AbortController();
        const waiting = createLock(pool.target, uniqueKey(), POOL).acquire({
          signal: controller.signal,
        });
        await waitersOf(pool, 1);
        const reason = new Error('give up');
        controller.abort(reason);
        let caught: unknown;
        await waiting.catch((err: unknown) => (caught = err));
        expect(caught).to.equal(reason);
        await busy.release();
        await allGivenBack(pool);
      } finally {
        await pool.close();
      }
    });
  });
}

/** Pools whose own acquire timeout (300 ms) fires while their only connection is lent out. */
const POOLS_THAT_TIME_OUT: OnePool[] = [
  {
    name: 'knex (pg), acquireConnectionTimeout',
    async open() {
      const warnings: string[] = [];
      const knex = knexFactory({
        client: 'pg',
        connection: (await databaseUrls()).pg,
        pool: { min: 0, max: 1 },
        acquireConnectionTimeout: 300,
        log: { warn: (message: string) => void warnings.push(message) },
      });
      return {
        target: knex,
        checkedOut: () => knex.client.pool.numUsed(),
        waiting: () => knex.client.pool.numPendingAcquires(),
        close: () => knex.destroy(),
      };
    },
  },
  {
    name: 'pg.Pool, connectionTimeoutMillis',
    async open() {
      const pool = new pg.Pool({
        connectionString: (await databaseUrls()).pg,
        max: 1,
        connectionTimeoutMillis: 300,
      });
      return {
        target: pool,
        checkedOut: () => pool.totalCount - pool.idleCount,
        waiting: () => pool.waitingCount,
        close: () => pool.end(),
      };
    },
  },
];

for (const kind of POOLS_THAT_TIME_OUT) {
  describe(`the pool's own acquire timeout, on ${kind.name}`, () => {
    /** Runs `fn` while the pool's only connection is taken by a lock held on it. */
    async function whileExhausted(fn: (target: object) => Promise<void>): Promise<void> {
      const opened = await kind.open();
      const holder = createLock(opened.target, uniqueKey(), POOL);
      try {
        expect(await holder.acquire({ block: false })).to.equal(true);
        expect(opened.checkedOut()).to.equal(1);
        await fn(opened.target);
      } finally {
        await holder.close();
        await opened.close();
      }
    }

    it('a wait forever rejects with ERR_DLOCK_POOL_TIMEOUT, not a database error', async () => {
      await whileExhausted(async (target) => {
        const error = await expectRejectCode(
          createLock(target, uniqueKey(), POOL).acquire(),
          'ERR_DLOCK_POOL_TIMEOUT',
        );
        expect(error).to.be.instanceOf(PoolTimeoutError);
        expect(error.message).to.match(/no free connection/);
      });
    });

    it('an acquire with a timeout longer than the pool’s resolves false', async () => {
      await whileExhausted(async (target) => {
        const started = performance.now();
        expect(await createLock(target, uniqueKey(), POOL).acquire({ timeout: 5_000 })).to.equal(
          false,
        );
        expect(performance.now() - started, 'ended by the pool, not the lock').to.be.below(2_000);
      });
    });
  });
}

describe('a connection the library closes in a knex pool', () => {
  for (const client of ['pg', 'mysql2'] as const) {
    it(`is dropped by the pool silently, never lent again (knex ${client})`, async () => {
      const urls = await databaseUrls();
      const logged: string[] = [];
      const log = (message: string) => void logged.push(message);
      const knex = knexFactory({
        client,
        connection: client === 'pg' ? urls.pg : urls.mysql,
        pool: { min: 0, max: 1 },
        log: { warn: log, error: log, debug: log },
      });
      try {
        const lease = await knexDriver(knex as unknown as KnexLike, client).lease();
        const closed = lease.session.connection;
        expect(await lease.destroy()).to.equal(true);
        const next = (await knex.client.acquireConnection()) as object;
        await knex.client.releaseConnection(next);
        expect(next).to.not.equal(closed);
        await knex.raw('SELECT 1');
        expect(logged).to.deep.equal([]);
      } finally {
        await knex.destroy();
      }
    });
  }
});
