/**
 * What the servers show about lock waits. A test that cancels, kills or races a wait acts once
 * the server shows that wait, never after a guessed delay: a fixed sleep either wastes time or,
 * on a slow machine, acts before the wait arrived and tests something else.
 *
 * PostgreSQL lists a waiting advisory lock in `pg_locks` (not granted); MySQL and MariaDB show a
 * session waiting in GET_LOCK in `information_schema.PROCESSLIST` with the state "User lock".
 * `pg_stat_activity` shows what statement a PostgreSQL session runs.
 */
import { expect } from 'chai';
import mysql from 'mysql2';
import mysqlPromise from 'mysql2/promise';
import pg from 'pg';
import { sleep } from './expect.js';
import { urlFor } from './sessions.js';
import type { DialectName } from './targets.js';

/** How often the helpers below ask again. */
const POLL_MS = 10;
const DEFAULT_TIMEOUT_MS = 5_000;

/** Polls `probe` until `ok` holds of its value; fails, saying the last value, after `timeoutMs`. */
export async function until<T>(
  what: string,
  probe: () => T | Promise<T>,
  ok: (value: T) => boolean,
  timeoutMs = 3_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (performance.now() > deadline) {
      expect.fail(`${what}: still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    }
    await sleep(POLL_MS);
  }
}

/** A pg `Client` or `Pool`. */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/** A mysql2/promise connection or pool. */
export interface MysqlQueryable {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
}

/** Which waits to look for; every advisory / named lock wait when empty. */
export interface PgWaitFilter {
  /** Only this backend's wait. */
  readonly pid?: number;
  /** Only waits for these int64 keys (PostgresLock actual keys). */
  readonly keys?: readonly (bigint | string)[];
}

export interface MysqlWaitFilter {
  /** Only this connection's wait. */
  readonly threadId?: number;
  /** Only waits for these lock names (MysqlLock actual keys). */
  readonly names?: readonly string[];
}

/** How long to poll, and for how many waits. */
export interface WaitOptions {
  /** Poll until exactly this many sessions wait; by default, until at least one does. */
  readonly count?: number;
  readonly timeoutMs?: number;
}

/** Backend pids of the sessions waiting for an advisory lock, one per waiting request. */
export async function pgLockWaiters(pool: PgQueryable, filter: PgWaitFilter = {}) {
  // An int8 key shows as classid = its high 32 bits and objid = its low 32 bits.
  const { rows } = await pool.query(
    `SELECT pid FROM pg_locks
      WHERE locktype = 'advisory' AND NOT granted AND pid <> pg_backend_pid()
        AND ($1::int IS NULL OR pid = $1)
        AND ($2::int8[] IS NULL
          OR (objsubid = 1 AND ((classid::int8 << 32) | objid::int8) = ANY ($2::int8[])))`,
    [filter.pid ?? null, filter.keys?.map(String) ?? null],
  );
  return rows.map((row) => Number(row.pid));
}

/** Connection ids of the sessions waiting in GET_LOCK. */
export async function mysqlLockWaiters(conn: MysqlQueryable, filter: MysqlWaitFilter = {}) {
  const [rows] = (await conn.query(
    `SELECT ID, INFO FROM information_schema.PROCESSLIST
      WHERE STATE LIKE '%User lock%' AND ID <> CONNECTION_ID() AND (? IS NULL OR ID = ?)`,
    [filter.threadId ?? null, filter.threadId ?? null],
  )) as [{ ID: unknown; INFO: unknown }[], unknown];
  // The drivers send the name inside the statement, escaped as mysql2 escapes it.
  const quoted = filter.names?.map((name) => mysql.escape(name));
  return rows
    .filter((row) => !quoted || quoted.some((name) => String(row.INFO ?? '').includes(name)))
    .map((row) => Number(row.ID));
}

function enough(ids: number[], count: number | undefined): boolean {
  return count === undefined ? ids.length > 0 : ids.length === count;
}

function expected(count: number | undefined, filter: object): string {
  const which = JSON.stringify(filter, (_key, value: unknown) =>
    typeof value === 'bigint' ? String(value) : value,
  );
  return `${count === undefined ? 'a lock wait' : `${count} lock wait(s)`} for ${which}`;
}

/**
 * Polls `pg_locks` every 10 ms until the backend `pid` (or any backend) waits for `key` (or any
 * advisory lock); resolves the waiting pids. Fails after `timeoutMs`.
 */
export function waitForPgLockWait(
  pool: PgQueryable,
  target: { readonly pid?: number; readonly key?: bigint | string },
  options: WaitOptions = {},
): Promise<number[]> {
  const filter = { pid: target.pid, keys: target.key === undefined ? undefined : [target.key] };
  return until(
    `pg_locks should show ${expected(options.count, filter)}`,
    () => pgLockWaiters(pool, filter),
    (pids) => enough(pids, options.count),
    options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  );
}

/**
 * Polls PROCESSLIST every 10 ms until connection `threadId` (or any connection) waits in
 * GET_LOCK for `name` (or any name); resolves the waiting ids. Fails after `timeoutMs`.
 */
export function waitForMysqlLockWait(
  conn: MysqlQueryable,
  target: { readonly threadId?: number; readonly name?: string },
  options: WaitOptions = {},
): Promise<number[]> {
  const filter = {
    threadId: target.threadId,
    names: target.name === undefined ? undefined : [target.name],
  };
  return until(
    `PROCESSLIST should show ${expected(options.count, filter)}`,
    () => mysqlLockWaiters(conn, filter),
    (ids) => enough(ids, options.count),
    options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  );
}

/**
 * Polls `pg_stat_activity` every 10 ms until backend `pid` is running a statement that contains
 * `text`. Fails after `timeoutMs`.
 */
export async function waitForPgStatement(
  pool: PgQueryable,
  target: { readonly pid: number; readonly text: string },
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<void> {
  await until(
    `pg_stat_activity should show backend ${target.pid} running ${JSON.stringify(target.text)}`,
    async () => {
      const { rows } = await pool.query(
        `SELECT state, query FROM pg_stat_activity WHERE pid = $1`,
        [target.pid],
      );
      return rows[0] ?? null;
    },
    (row) => row?.state === 'active' && String(row.query).includes(target.text),
    timeoutMs,
  );
}

/** A connection of its own that watches one server's lock waits, whatever the dialect. */
export interface LockWaitWatcher {
  /**
   * Polls until sessions wait for `actualKey` (see {@link WaitOptions}); resolves their ids (pg
   * backend pids, MySQL connection ids).
   */
  waitFor(actualKey: bigint | string, options?: WaitOptions): Promise<number[]>;
  close(): Promise<void>;
}

export async function watchLockWaits(dialect: DialectName): Promise<LockWaitWatcher> {
  const url = await urlFor(dialect);
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    await client.connect();
    return {
      waitFor: (key, options) => waitForPgLockWait(client, { key }, options),
      close: () => client.end(),
    };
  }
  const conn = await mysqlPromise.createConnection({ uri: url });
  conn.on('error', () => undefined);
  return {
    waitFor: (name, options) => waitForMysqlLockWait(conn, { name: String(name) }, options),
    close: () => conn.end(),
  };
}
