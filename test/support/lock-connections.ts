/**
 * Helpers for the lock-connection tests: knex instances whose sessions the server can tell
 * apart, a probe that reads the server's view of many keys at once, and bounded polling.
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { MysqlLock, PostgresLock } from '../../src/index.js';
import { mysqlLockWaiters, pgLockWaiters } from './server-state.js';
import { urlFor } from './sessions.js';
import { openInspector, type DialectName, type LockInspector } from './targets.js';

/** Polling lives with the other server-state helpers; re-exported for the tests that use it here. */
export { until } from './server-state.js';

export const DIALECTS = [
  { dialect: 'postgres', name: 'PostgreSQL', client: 'pg' },
  { dialect: 'mysql', name: 'MariaDB', client: 'mysql2' },
] as const;

/** A second database on the MySQL server, so that its sessions can be told apart by `DB`. */
export const SIDE_DATABASE = 'dlock_test_locks';

let tagCounter = 0;
/** A PostgreSQL application_name unique to this process and call. */
export function uniqueTag(label: string): string {
  tagCounter += 1;
  return `dlock-test-${label}-${process.pid}-${tagCounter}`;
}

export function actualKeyOf(dialect: DialectName, key: string): bigint | string {
  return dialect === 'postgres' ? PostgresLock.convert(key) : MysqlLock.convert(key);
}

/** A mysql2 connection config for `url`, with `overrides`. */
export function mysqlConfig(url: string, overrides: Record<string, unknown> = {}) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: u.pathname.slice(1),
    ...overrides,
  };
}

export interface KnexOptions {
  pool?: { min: number; max: number };
  acquireConnectionTimeout?: number;
  /** PostgreSQL: application_name of every session; MySQL: database of every session. */
  tag?: string;
  /** Keeps knex from logging pool timeouts that the test provokes. */
  quiet?: boolean;
}

const silent = () => undefined;

export async function openKnex(dialect: DialectName, options: KnexOptions = {}): Promise<Knex> {
  const url = await urlFor(dialect);
  const connection =
    dialect === 'postgres'
      ? { connectionString: url, ...(options.tag ? { application_name: options.tag } : {}) }
      : mysqlConfig(url, options.tag ? { database: options.tag } : {});
  return knexFactory({
    client: dialect === 'postgres' ? 'pg' : 'mysql2',
    connection,
    pool: options.pool ?? { min: 0, max: 4 },
    ...(options.acquireConnectionTimeout !== undefined
      ? { acquireConnectionTimeout: options.acquireConnectionTimeout }
      : {}),
    ...(options.quiet
      ? { log: { warn: silent, error: silent, debug: silent, deprecate: silent } }
      : {}),
  });
}

/** The server's view of many keys and sessions at once, from a connection of its own. */
export interface ServerProbe {
  /** Sessions waiting in the database for any of `keys` (actual keys). */
  waitingFor(keys: readonly (bigint | string)[]): Promise<number>;
  /** The holder id of each of `keys` that some session holds (one entry per held key). */
  holdersOf(keys: readonly (bigint | string)[]): Promise<number[]>;
  /** Ids of the sessions tagged `tag` (PostgreSQL application_name, MySQL database). */
  tagged(tag: string): Promise<number[]>;
  /** Whether a session with this id exists. */
  exists(id: number): Promise<boolean>;
  /** PostgreSQL application_name / MySQL database of session `id`. */
  tagOf(id: number): Promise<string | undefined>;
  /** PostgreSQL: advisory locks held by the sessions `ids`. */
  advisoryLocksOf(ids: readonly number[]): Promise<number>;
  close(): Promise<void>;
}

function pgParts(keys: readonly (bigint | string)[]): [string[], string[]] {
  const hi: string[] = [];
  const lo: string[] = [];
  for (const key of keys) {
    const k = BigInt.asUintN(64, BigInt(key));
    hi.push((k >> 32n).toString());
    lo.push((k & 0xffffffffn).toString());
  }
  return [hi, lo];
}

export async function openProbe(dialect: DialectName): Promise<ServerProbe> {
  const url = await urlFor(dialect);
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    await client.connect();
    const keyed = `locktype = 'advisory' AND objsubid = 1
      AND (classid::int8, objid::int8) IN (SELECT * FROM unnest($1::int8[], $2::int8[]))`;
    return {
      waitingFor: async (keys) => (await pgLockWaiters(client, { keys })).length,
      async holdersOf(keys) {
        const { rows } = await client.query(
          `SELECT pid FROM pg_locks WHERE granted AND ${keyed}`,
          pgParts(keys),
        );
        return rows.map((row) => row.pid as number);
      },
      async tagged(tag) {
        const { rows } = await client.query(
          'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
          [tag],
        );
        return rows.map((row) => row.pid as number);
      },
      async exists(id) {
        const { rows } = await client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [id]);
        return rows.length > 0;
      },
      async tagOf(id) {
        const { rows } = await client.query(
          'SELECT application_name FROM pg_stat_activity WHERE pid = $1',
          [id],
        );
        return rows[0]?.application_name as string | undefined;
      },
      async advisoryLocksOf(ids) {
        const { rows } = await client.query(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = ANY($1)`,
          [ids],
        );
        return rows[0].n as number;
      },
      close: () => client.end(),
    };
  }
  const conn = await mysql.createConnection({ uri: url });
  conn.on('error', () => undefined);
  const rowsOf = async (sql: string, params: unknown[] = []) =>
    (await conn.query<mysql.RowDataPacket[]>(sql, params))[0];
  return {
    waitingFor: async (keys) => (await mysqlLockWaiters(conn, { names: keys.map(String) })).length,
    async holdersOf(keys) {
      const rows = await rowsOf(
        `SELECT IS_USED_LOCK(t.k) AS id
           FROM JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(255) PATH '$')) t`,
        [JSON.stringify(keys.map(String))],
      );
      return rows.filter((row) => row.id !== null).map((row) => Number(row.id));
    },
    async tagged(tag) {
      const rows = await rowsOf(
        'SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()',
        [tag],
      );
      return rows.map((row) => Number(row.ID));
    },
    async exists(id) {
      const rows = await rowsOf('SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?', [id]);
      return rows.length > 0;
    },
    async tagOf(id) {
      const rows = await rowsOf('SELECT DB FROM information_schema.PROCESSLIST WHERE ID = ?', [id]);
      return (rows[0]?.DB as string | null | undefined) ?? undefined;
    },
    async advisoryLocksOf() {
      throw new Error('MySQL has no list of the named locks a session holds');
    },
    close: () => conn.end(),
  };
}

/** Creates the MySQL side database if it is missing. */
export async function ensureSideDatabase(): Promise<void> {
  const conn = await mysql.createConnection({ uri: await urlFor('mysql') });
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS ${SIDE_DATABASE}`);
  } finally {
    await conn.end();
  }
}

/** What the tests of one `describe` share: see {@link lockConnectionScope}. */
export interface LockConnectionScope {
  readonly inspector: LockInspector;
  readonly probe: ServerProbe;
  /** Run after the test, last added first. */
  readonly cleanups: (() => Promise<unknown>)[];
  /** A knex instance destroyed after the test. */
  knexFor(options?: KnexOptions): Promise<Knex>;
}

/**
 * Mocha hooks for one `describe`: an inspector and a server probe for its tests, clean-ups run
 * after each test, and a check that no key a test made is left held. `prepare` runs first.
 */
export function lockConnectionScope(
  dialect: DialectName,
  prepare?: () => Promise<void>,
): LockConnectionScope {
  let inspector: LockInspector | undefined;
  let probe: ServerProbe | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];
  before(async () => {
    await prepare?.();
    inspector = await openInspector(dialect);
    probe = await openProbe(dialect);
  });
  after(async () => {
    await inspector?.close();
    await probe?.close();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    expect(await inspector!.leftovers()).to.deep.equal([]);
  });
  return {
    get inspector() {
      return inspector!;
    },
    get probe() {
      return probe!;
    },
    cleanups,
    async knexFor(options: KnexOptions = {}) {
      const knex = await openKnex(dialect, options);
      cleanups.push(() => knex.destroy());
      return knex;
    },
  };
}
