/**
 * Helpers for the fencing-token tests: checks on tokens, the token store (PostgreSQL's sequence,
 * MySQL's table) taken away and put back, and transactions on any transactional target.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import type { BaseLock } from '../../src/index.js';
import { openSession } from './sessions.js';
import type { DialectName, TargetKind } from './targets.js';

/** The sequence (PostgreSQL) or table (MySQL) that fencing tokens come from. */
export const FENCING_STORE = 'knex_dlock_fencing';

/** The fencing token of a lock that must hold one, checked to be a bigint. */
export function heldToken(lock: BaseLock): bigint {
  const token = lock.fencingToken;
  expect(token, `fencingToken of ${String(lock.key)} while held`).to.be.a('bigint');
  return token as bigint;
}

/** Asserts that `tokens`, in the order of their grants, strictly increase (so never repeat). */
export function expectIncreasing(tokens: readonly bigint[], what: string): void {
  for (let i = 1; i < tokens.length; i += 1) {
    if (tokens[i]! <= tokens[i - 1]!) {
      expect.fail(
        `${what}: token #${i} (${tokens[i]}) is not above #${i - 1} (${tokens[i - 1]}) ` +
          `in [${tokens.join(', ')}]`,
      );
    }
  }
}

/** Asks whether the token store exists now. */
export interface FencingStore {
  exists(): Promise<boolean>;
}

/**
 * Runs `body` with the token store taken away, then puts it back as it was, so that the tests
 * after it find it, and with counters no lower than before: tokens never go back, whatever
 * `body` did meanwhile. PostgreSQL: the sequence is dropped, then (re)created and set to the
 * larger of its old and new value. MySQL: the table is renamed aside, then its rows are merged
 * back, keeping the larger counter of each name.
 */
export async function withoutFencingStore(
  dialect: DialectName,
  body: (store: FencingStore) => Promise<void>,
): Promise<void> {
  const admin = await openSession(dialect);
  try {
    const store: FencingStore = {
      async exists() {
        const [row] = await admin.query(
          dialect === 'postgres'
            ? `SELECT to_regclass('${FENCING_STORE}') IS NOT NULL AS present`
            : `SELECT COUNT(*) > 0 AS present FROM information_schema.TABLES
                WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '${FENCING_STORE}'`,
        );
        return row?.present === true || Number(row?.present) === 1;
      },
    };
    if (dialect === 'postgres') await withoutSequence(admin.query, store, body);
    else await withoutTable(admin.query, store, body);
  } finally {
    await admin.close();
  }
}

type Query = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

async function withoutSequence(
  query: Query,
  store: FencingStore,
  body: (store: FencingStore) => Promise<void>,
): Promise<void> {
  const [saved] = (await store.exists())
    ? await query(`SELECT last_value::text AS last FROM ${FENCING_STORE}`)
    : [];
  await query(`DROP SEQUENCE IF EXISTS ${FENCING_STORE}`);
  try {
    await body(store);
  } finally {
    await query(`CREATE SEQUENCE IF NOT EXISTS ${FENCING_STORE}`);
    if (saved) {
      await query(
        `SELECT setval('${FENCING_STORE}', greatest($1::int8, last_value)) FROM ${FENCING_STORE}`,
        [saved.last],
      );
    }
  }
}

async function withoutTable(
  query: Query,
  store: FencingStore,
  body: (store: FencingStore) => Promise<void>,
): Promise<void> {
  const aside = `${FENCING_STORE}_aside_${process.pid}`;
  const had = await store.exists();
  if (had) await query(`RENAME TABLE ${FENCING_STORE} TO ${aside}`);
  try {
    await body(store);
  } finally {
    if (had) {
      await query(`CREATE TABLE IF NOT EXISTS ${FENCING_STORE} LIKE ${aside}`);
      await query(
        `INSERT INTO ${FENCING_STORE} (name, token) SELECT a.name, a.token FROM ${aside} a
           ON DUPLICATE KEY UPDATE token = GREATEST(${FENCING_STORE}.token, VALUES(token))`,
      );
      await query(`DROP TABLE ${aside}`);
    }
  }
}

/**
 * Whether a target of `kind` can lock inside a transaction of its own: a knex instance (through
 * `knex.transaction()`) or a connection (through BEGIN). A pg.Pool or mysql2 pool hands out
 * connections outside any transaction; its users lock on a connection taken from it.
 */
export function transactional(kind: TargetKind): boolean {
  return !kind.pooled || kind.name.startsWith('knex');
}

/** A transaction open on a target, for locks to take inside it. */
export interface OpenTransaction {
  /** The lock target inside the transaction: the knex transaction, or the connection itself. */
  readonly target: object;
  /** The server's id of the transaction's session (backend pid / connection id). */
  readonly sessionId: number;
  /** Runs one statement inside the transaction; resolves its rows. */
  query(sql: string): Promise<Record<string, unknown>[]>;
  rollback(): Promise<void>;
}

interface PgLikeClient {
  query(sql: string): Promise<{ rows: Record<string, unknown>[] }>;
}

interface MysqlLikeConnection {
  query(sql: string): Promise<[unknown, unknown]>;
}

function isKnex(target: object): target is Knex {
  return typeof target === 'function' && 'transaction' in target;
}

/**
 * A query function on one connection: a pg client or a mysql2 connection (callback or promise
 * API); it resolves the rows of one statement.
 */
export function sessionQuery(
  dialect: DialectName,
  target: object,
): (sql: string) => Promise<Record<string, unknown>[]> {
  if (dialect === 'postgres') {
    const client = target as PgLikeClient;
    return async (sql: string) => (await client.query(sql)).rows;
  }
  // A callback-API connection has a promise() view of itself; a promise one is that view.
  const promised = (
    'promise' in target && typeof target.promise === 'function' ? target.promise() : target
  ) as MysqlLikeConnection;
  return async (sql: string) => (await promised.query(sql))[0] as Record<string, unknown>[];
}

/**
 * Opens a transaction on `target` (a knex instance, a pg client or a mysql2 connection; see
 * {@link transactional}), read-only if asked.
 */
export async function beginTransaction(
  dialect: DialectName,
  target: object,
  options: { readOnly?: boolean } = {},
): Promise<OpenTransaction> {
  let inside: object;
  let query: (sql: string) => Promise<Record<string, unknown>[]>;
  let rollback: () => Promise<void>;
  if (isKnex(target)) {
    const trx = await target.transaction(options.readOnly ? { readOnly: true } : {});
    inside = trx;
    query = async (sql) => {
      const result = await trx.raw(sql);
      return (dialect === 'postgres' ? result.rows : result[0]) as Record<string, unknown>[];
    };
    rollback = async () => void (await trx.rollback());
  } else {
    inside = target;
    query = sessionQuery(dialect, target);
    const begin = dialect === 'postgres' ? 'BEGIN' : 'START TRANSACTION';
    await query(options.readOnly ? `${begin} READ ONLY` : begin);
    rollback = async () => void (await query('ROLLBACK'));
  }
  const [row] = await query(
    dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id',
  );
  return { target: inside, sessionId: Number(row?.id), query, rollback };
}
