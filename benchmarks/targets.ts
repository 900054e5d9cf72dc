/**
 * The target kinds a lock can be created on, each opened beside a connection that the raw
 * contenders keep for the whole run: the same connection for a pg client, a mysql2 connection
 * or a knex transaction; one connection checked out of the pool (and never given back until
 * the end) for a knex instance, a pg.Pool or a mysql2 pool.
 */
import knexFactory, { type Knex } from 'knex';
import mysql from 'mysql2';
import pg from 'pg';
import { closeLockConnections } from './library.js';
import { mysqlConnection, pgClient, type BenchContext } from './runner.js';

export type Database = 'pg' | 'mysql';

/** A raw driver connection that one contender keeps for the whole run. */
export type Pinned =
  | { readonly database: 'pg'; readonly client: pg.ClientBase }
  | { readonly database: 'mysql'; readonly conn: mysql.Connection };

/**
 * How the library reaches its connection on a kind of target: the very connection the raw
 * contenders use (`pinned`), a transaction's connection (`transaction`), or connections the
 * target hands out (`pooled`: a knex instance or a driver pool).
 */
export type Reach = 'pinned' | 'transaction' | 'pooled';

export interface OpenedTarget {
  /** What the lock is created on. */
  readonly target: object;
  /** The raw driver connection behind a transaction, for traffic counting. */
  readonly countOn?: object;
  /** The connection the raw contenders keep. */
  readonly pinned: Pinned;
  close(): Promise<void>;
}

export interface TargetKind {
  readonly name: string;
  readonly database: Database;
  readonly reach: Reach;
  /** A knex instance: the library also runs there with `connection: 'pool'`. */
  readonly knexInstance?: boolean;
  open(ctx: BenchContext): Promise<OpenedTarget>;
}

const urlOf = (ctx: BenchContext, database: Database) =>
  database === 'pg' ? ctx.pgUrl : ctx.mysqlUrl;

const knexClientOf = (database: Database) => (database === 'pg' ? 'pg' : 'mysql2');

function pinnedOf(database: Database, connection: object): Pinned {
  return database === 'pg'
    ? { database, client: connection as pg.ClientBase }
    : { database, conn: connection as mysql.Connection };
}

const pgClientKind: TargetKind = {
  name: 'pg.Client',
  database: 'pg',
  reach: 'pinned',
  async open(ctx) {
    const client = await pgClient(ctx.pgUrl);
    return { target: client, pinned: { database: 'pg', client }, close: () => client.end() };
  },
};

const mysqlConnectionKind: TargetKind = {
  name: 'mysql2 connection',
  database: 'mysql',
  reach: 'pinned',
  async open(ctx) {
    const conn = await mysqlConnection(ctx.mysqlUrl);
    return {
      target: conn,
      pinned: { database: 'mysql', conn },
      close: () => conn.promise().end(),
    };
  },
};

/**
 * A knex instance with a pool of 2: the raw contenders keep one connection, and with
 * `connection: 'pool'` the library borrows the other for each lock. In the default mode the
 * library runs on lock connections of its own.
 */
function knexKind(database: Database): TargetKind {
  return {
    name: `knex (${knexClientOf(database)})`,
    database,
    reach: 'pooled',
    knexInstance: true,
    async open(ctx) {
      const knex: Knex = knexFactory({
        client: knexClientOf(database),
        connection: urlOf(ctx, database),
        pool: { min: 0, max: 2 },
      });
      const kept = (await knex.client.acquireConnection()) as object;
      return {
        target: knex,
        pinned: pinnedOf(database, kept),
        async close() {
          await knex.client.releaseConnection(kept);
          await closeLockConnections(knex);
          await knex.destroy();
        },
      };
    },
  };
}

/** A knex transaction: the library and the raw contenders run on its one connection. */
function knexTransactionKind(database: Database): TargetKind {
  return {
    name: `knex transaction (${knexClientOf(database)})`,
    database,
    reach: 'transaction',
    async open(ctx) {
      const knex: Knex = knexFactory({
        client: knexClientOf(database),
        connection: urlOf(ctx, database),
        pool: { min: 0, max: 1 },
      });
      const trx = await knex.transaction();
      const connection = (await trx.client.acquireConnection()) as object;
      return {
        target: trx,
        countOn: connection,
        pinned: pinnedOf(database, connection),
        async close() {
          await trx.commit();
          await knex.destroy();
        },
      };
    },
  };
}

const pgPoolKind: TargetKind = {
  name: 'pg.Pool',
  database: 'pg',
  reach: 'pooled',
  async open(ctx) {
    const pool = new pg.Pool({ connectionString: ctx.pgUrl, max: 2 });
    const kept = await pool.connect();
    return {
      target: pool,
      pinned: { database: 'pg', client: kept },
      async close() {
        kept.release();
        await closeLockConnections(pool);
        await pool.end();
      },
    };
  },
};

const mysqlPoolKind: TargetKind = {
  name: 'mysql2 pool',
  database: 'mysql',
  reach: 'pooled',
  async open(ctx) {
    const pool = mysql.createPool({ uri: ctx.mysqlUrl, connectionLimit: 2 });
    const kept = await new Promise<mysql.PoolConnection>((resolve, reject) =>
      pool.getConnection((err, conn) => (err ? reject(err) : resolve(conn))),
    );
    return {
      target: pool,
      pinned: { database: 'mysql', conn: kept },
      async close() {
        kept.release();
        await closeLockConnections(pool);
        await new Promise<void>((resolve) => pool.end(() => resolve()));
      },
    };
  },
};

/** Every target kind, PostgreSQL first. */
export const TARGET_KINDS: readonly TargetKind[] = [
  pgClientKind,
  knexKind('pg'),
  knexTransactionKind('pg'),
  pgPoolKind,
  mysqlConnectionKind,
  knexKind('mysql'),
  knexTransactionKind('mysql'),
  mysqlPoolKind,
];

/** The kinds whose library and raw contenders share one connection the caller owns. */
export const PINNED_KINDS: readonly TargetKind[] = [pgClientKind, mysqlConnectionKind];
