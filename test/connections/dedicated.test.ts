/** Waiting locks and the application's pool: what `connection: 'dedicated'` is for. */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import mysql from 'mysql2';
import pg from 'pg';
import { createLock } from '../../src/index.js';
import { databaseUrls } from '../support/databases.js';
import { waitForPgLockWait } from '../support/server-state.js';
import { openInspector, uniqueKey } from '../support/targets.js';

describe('connection: "dedicated"', () => {
  let knex: Knex;
  let holderClient: pg.Client;

  beforeEach(async () => {
    const url = (await databaseUrls()).pg;
    knex = knexFactory({
      client: 'pg',
      connection: url,
      pool: { min: 0, max: 2 },
      acquireConnectionTimeout: 500,
    });
    holderClient = new pg.Client({ connectionString: url });
    await holderClient.connect();
  });
  afterEach(async () => {
    await knex.destroy();
    await holderClient.end();
  });

  it('waiting locks on pooled connections starve a knex pool of 2; the app times out', async () => {
    const key = uniqueKey();
    const holder = createLock(holderClient, key);
    await holder.acquire();
    const waiters = [
      createLock(knex, key, { connection: 'pool' }),
      createLock(knex, key, { connection: 'pool' }),
    ];
    const waiting = waiters.map((lock) => lock.acquire({ timeout: 1_500 }));
    // Both wait in the database, each on a connection of the pool's two.
    await waitForPgLockWait(holderClient, { key: holder.actualKey }, { count: 2 });
    let appError: unknown;
    await knex.raw('SELECT 1').catch((err: unknown) => (appError = err));
    expect(appError).to.have.property('name', 'KnexTimeoutError');
    expect(await Promise.all(waiting)).to.deep.equal([false, false]);
    await holder.release();
  });

  it('waiting dedicated locks leave the knex pool to the app, and hold the lock the same', async () => {
    const key = uniqueKey();
    const holder = createLock(holderClient, key);
    await holder.acquire();
    const waiters = [0, 1, 2].map(() => createLock(knex, key, { connection: 'dedicated' }));
    const waiting = waiters.map((lock) => lock.acquire());
    await waitForPgLockWait(holderClient, { key: holder.actualKey }, { count: 3 });
    const { rows } = await knex.raw('SELECT 1 AS ok');
    expect(rows).to.deep.equal([{ ok: 1 }]);
    await holder.release();
    // One waiter at a time gets the lock; each releases for the next.
    for (let i = 0; i < 3; i += 1) {
      const winner = await Promise.race(waiting.map((p, index) => p.then(() => index)));
      await waiters[winner]!.release();
      waiting[winner] = new Promise(() => undefined);
    }
    const inspector = await openInspector('postgres');
    expect(await inspector.leftovers()).to.deep.equal([]);
    await inspector.close();
  });

  it('dedicated locks on a pg.Pool and a mysql2 pool open no pooled connection', async () => {
    const urls = await databaseUrls();
    const pgPool = new pg.Pool({ connectionString: urls.pg, max: 1 });
    const mysqlPool = mysql.createPool({ uri: urls.mysql, connectionLimit: 1 });
    try {
      for (const pool of [pgPool, mysqlPool]) {
        const key = uniqueKey();
        const first = createLock(pool, key, { connection: 'dedicated' });
        const second = createLock(pool, key, { connection: 'dedicated' });
        expect(await first.acquire()).to.equal(true);
        expect(await second.acquire({ block: false })).to.equal(false);
        await first.release();
        expect(await second.acquire({ block: false })).to.equal(true);
        await second.release();
      }
      expect(pgPool.totalCount).to.equal(0);
      expect(
        (mysqlPool as unknown as { _allConnections: unknown[] })._allConnections,
      ).to.have.length(0);
    } finally {
      await pgPool.end();
      await new Promise((resolve) => mysqlPool.end(resolve));
    }
  });
});
