/**
 * Every kind of target createLock accepts, each able to open independent instances (two
 * instances never share a database session) and to look into the database's lock tables.
 */
import knexFactory, { type Knex } from 'knex';
import mysqlCallback from 'mysql2';
import mysqlPromise from 'mysql2/promise';
import pg from 'pg';
import { MysqlLock, PostgresLock } from '../../src/index.js';
import { databaseUrls } from './databases.js';

export type DialectName = 'postgres' | 'mysql';

export interface OpenTarget {
  readonly target: object;
  close(): Promise<void>;
}

export interface TargetKind {
  readonly name: string;
  readonly dialect: DialectName;
  /** Whether the target lends connections (pool or knex instance) rather than being one. */
  readonly pooled: boolean;
  /**
   * Whether test/support/counting.ts can watch its connections' sockets. pg's native client
   * writes through libpq, whose socket JavaScript never sees: tests that count wire traffic skip
   * those kinds, every behavioural test runs on them.
   */
  readonly wire: boolean;
  open(): Promise<OpenTarget>;
}

const pgUrl = async () => (await databaseUrls()).pg;
const mysqlUrl = async () => (await databaseUrls()).mysql;

/** pg's libpq binding (pg-native, a dev dependency), loaded when first used. */
export function pgNative(): typeof pg {
  if (!pg.native) throw new Error('pg.native is not available: is pg-native installed?');
  return pg.native;
}

function callbackEnd(end: (cb: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve) => end(() => resolve()));
}

export const TARGET_KINDS: readonly TargetKind[] = [
  {
    name: 'knex (pg)',
    dialect: 'postgres',
    pooled: true,
    wire: true,
    async open() {
      const knex = knexFactory({
        client: 'pg',
        connection: await pgUrl(),
        pool: { min: 0, max: 4 },
      });
      return { target: knex, close: () => knex.destroy() };
    },
  },
  {
    name: 'knex (mysql2)',
    dialect: 'mysql',
    pooled: true,
    wire: true,
    async open() {
      const knex = knexFactory({
        client: 'mysql2',
        connection: await mysqlUrl(),
        pool: { min: 0, max: 4 },
      });
      return { target: knex, close: () => knex.destroy() };
    },
  },
  {
    name: 'pg.Client',
    dialect: 'postgres',
    pooled: false,
    wire: true,
    async open() {
      const client = new pg.Client({ connectionString: await pgUrl() });
      await client.connect();
      return { target: client, close: () => client.end().catch(() => undefined) };
    },
  },
  {
    name: 'pg.Pool',
    dialect: 'postgres',
    pooled: true,
    wire: true,
    async open() {
      const pool = new pg.Pool({ connectionString: await pgUrl(), max: 4 });
      return { target: pool, close: () => pool.end() };
    },
  },
  {
    name: 'pg.PoolClient',
    dialect: 'postgres',
    pooled: false,
    wire: true,
    async open() {
      const pool = new pg.Pool({ connectionString: await pgUrl(), max: 1 });
      const client = await pool.connect();
      return {
        target: client,
        close: async () => {
          client.release(true);
          await pool.end();
        },
      };
    },
  },
  {
    name: 'knex (pgnative)',
    dialect: 'postgres',
    pooled: true,
    wire: false,
    async open() {
      const knex = knexFactory({
        client: 'pgnative',
        connection: await pgUrl(),
        pool: { min: 0, max: 4 },
      });
      return { target: knex, close: () => knex.destroy() };
    },
  },
  {
    name: 'knex (mysql)',
    dialect: 'mysql',
    pooled: true,
    wire: true,
    async open() {
      const knex = knexFactory({
        client: 'mysql',
        connection: await mysqlUrl(),
        pool: { min: 0, max: 4 },
      });
      return { target: knex, close: () => knex.destroy() };
    },
  },
  {
    name: 'pg.native.Client',
    dialect: 'postgres',
    pooled: false,
    wire: false,
    async open() {
      const client = new (pgNative().Client)({ connectionString: await pgUrl() });
      await client.connect();
      return { target: client, close: () => client.end().catch(() => undefined) };
    },
  },
  {
    name: 'pg.native.Pool',
    dialect: 'postgres',
    pooled: true,
    wire: false,
    async open() {
      const pool = new (pgNative().Pool)({ connectionString: await pgUrl(), max: 4 });
      return { target: pool, close: () => pool.end() };
    },
  },
  {
    name: 'mysql2 connection',
    dialect: 'mysql',
    pooled: false,
    wire: true,
    async open() {
      const conn = mysqlCallback.createConnection({ uri: await mysqlUrl() });
      return { target: conn, close: () => callbackEnd((cb) => conn.end(cb)) };
    },
  },
  {
    name: 'mysql2/promise connection',
    dialect: 'mysql',
    pooled: false,
    wire: true,
    async open() {
      const conn = await mysqlPromise.createConnection({ uri: await mysqlUrl() });
      return { target: conn, close: () => conn.end().catch(() => undefined) };
    },
  },
  {
    name: 'mysql2 PoolConnection',
    dialect: 'mysql',
    pooled: false,
    wire: true,
    async open() {
      const pool = mysqlCallback.createPool({ uri: await mysqlUrl(), connectionLimit: 1 });
      const conn = await new Promise<mysqlCallback.PoolConnection>((resolve, reject) =>
        pool.getConnection((err, c) => (err ? reject(err) : resolve(c))),
      );
      return {
        target: conn,
        close: async () => {
          conn.destroy();
          await callbackEnd((cb) => pool.end(cb));
        },
      };
    },
  },
  {
    name: 'mysql2/promise PoolConnection',
    dialect: 'mysql',
    pooled: false,
    wire: true,
    async open() {
      const pool = mysqlPromise.createPool({ uri: await mysqlUrl(), connectionLimit: 1 });
      const conn = await pool.getConnection();
      return {
        target: conn,
        close: async () => {
          conn.destroy();
          await pool.end();
        },
      };
    },
  },
  {
    name: 'mysql2 pool',
    dialect: 'mysql',
    pooled: true,
    wire: true,
    async open() {
      const pool = mysqlCallback.createPool({ uri: await mysqlUrl(), connectionLimit: 4 });
      return { target: pool, close: () => callbackEnd((cb) => pool.end(cb)) };
    },
  },
  {
    name: 'mysql2/promise pool',
    dialect: 'mysql',
    pooled: true,
    wire: true,
    async open() {
      const pool = mysqlPromise.createPool({ uri: await mysqlUrl(), connectionLimit: 4 });
      return { target: pool, close: () => pool.end() };
    },
  },
];

/** An inspector on its own connection: asks the database who holds which lock. */
export interface LockInspector {
  /** How many sessions hold the lock (PostgreSQL: granted rows; MySQL: 0 or 1). */
  holders(actualKey: bigint | string): Promise<number>;
  /** The server-side ids (pg backend pid / MySQL connection id) of the sessions holding it. */
  holderIds(actualKey: bigint | string): Promise<number[]>;
  /** Kills a session on the server, as an operator or a failover would. */
  kill(id: number): Promise<void>;
  /**
   * The keys made by {@link uniqueKey} since the last call whose lock some session still holds.
   * Only this process's keys are looked at, so that other test runs on the same servers do not
   * interfere.
   */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

export async function openInspector(dialect: DialectName): Promise<LockInspector> {
  const inspector = await openHolderCounter(dialect);
  return {
    ...inspector,
    async leftovers() {
      const keys = issuedKeys.splice(0);
      const held: string[] = [];
      for (const key of keys) {
        const actual = dialect === 'postgres' ? PostgresLock.convert(key) : MysqlLock.convert(key);
        if ((await inspector.holders(actual)) > 0) held.push(key);
      }
      return held;
    },
  };
}

async function openHolderCounter(dialect: DialectName): Promise<Omit<LockInspector, 'leftovers'>> {
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: await pgUrl() });
    await client.connect();
    return {
      async holders(key) {
        const k = BigInt.asUintN(64, BigInt(key));
        const { rows } = await client.query(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND objsubid = 1 AND classid::int8 = $1 AND objid::int8 = $2`,
          [(k >> 32n).toString(), (k & 0xffffffffn).toString()],
        );
        return rows[0].n as number;
      },
      async holderIds(key) {
        const k = BigInt.asUintN(64, BigInt(key));
        const { rows } = await client.query(
          `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND objsubid = 1 AND classid::int8 = $1 AND objid::int8 = $2`,
          [(k >> 32n).toString(), (k & 0xffffffffn).toString()],
        );
        return rows.map((row) => row.pid as number);
      },
      async kill(pid) {
        // Waits until the backend is gone: it frees its locks only as it exits.
        await client.query('SELECT pg_terminate_backend($1, 2000)', [pid]);
      },
      close: () => client.end(),
    };
  }
  const conn = await mysqlPromise.createConnection({ uri: await mysqlUrl() });
  return {
    async holders(name) {
      const [rows] = await conn.query<mysqlPromise.RowDataPacket[]>(
        'SELECT IS_USED_LOCK(?) AS id',
        [String(name)],
      );
      return rows[0]?.id === null ? 0 : 1;
    },
    async holderIds(name) {
      const [rows] = await conn.query<mysqlPromise.RowDataPacket[]>(
        'SELECT IS_USED_LOCK(?) AS id',
        [String(name)],
      );
      const id = rows[0]?.id as number | null | undefined;
      return id === null || id === undefined ? [] : [Number(id)];
    },
    async kill(id) {
      await conn.query('KILL ?', [id]);
      // KILL returns before the thread has ended and freed its locks.
      for (let i = 0; i < 200; i += 1) {
        const [rows] = await conn.query<mysqlPromise.RowDataPacket[]>(
          'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?',
          [id],
        );
        if (Number(rows[0]?.n) === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    close: () => conn.end(),
  };
}

/** A fresh key per test, so that tests never see each other's locks. */
let keyCounter = 0;
const issuedKeys: string[] = [];
export function uniqueKey(label = 'key'): string {
  keyCounter += 1;
  const key = `dlock-test:${label}:${process.pid}:${Date.now()}:${keyCounter}`;
  issuedKeys.push(key);
  return key;
}

export type { Knex };
