/**
 * With `connection: 'pool'`, a lock waiting for a pool connection obeys its timeout and signal
 * like a lock wait does.
 */
import { expect } from 'chai';
import knexFactory from 'knex';
import mysql from 'mysql2';
import pg from 'pg';
import { createLock } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { sleep } from './support/expect.js';
import { uniqueKey } from './support/targets.js';

const POOL = { connection: 'pool' } as const;

interface OnePool {
  readonly name: string;
  open(): Promise<{ target: object; checkedOut(): number; close(): Promise<void> }>;
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
      };
      return {
        target: pool,
        checkedOut: () => internals._allConnections.length - internals._freeConnections.length,
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
        await sleep(20);
        expect(pool.checkedOut()).to.equal(0);
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
        await sleep(50);
        await waiter.close();
        let caught: unknown;
        await waiting.catch((err: unknown) => (caught = err));
        expect(caught).to.have.property('code', 'ERR_DLOCK_NOT_HELD');
        await busy.release();
        await sleep(50);
        expect(pool.checkedOut()).to.equal(0);
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
        await sleep(50);
        const reason = new Error('give up');
        controller.abort(reason);
        let caught: unknown;
        await waiting.catch((err: unknown) => (caught = err));
        expect(caught).to.equal(reason);
        await busy.release();
        await sleep(50);
        expect(pool.checkedOut()).to.equal(0);
      } finally {
        await pool.close();
      }
    });
  });
}
