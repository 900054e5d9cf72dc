import type { Row, SqlSession } from '../drivers/types.js';
import type { LockKey } from '../keys.js';

/** Which kind of lock to take; both flags default to false. */
export interface LockMode {
  /** Shared locks do not exclude each other, only exclusive ones (PostgreSQL only). */
  readonly shared: boolean;
  /** Held until the current transaction ends instead of until released (PostgreSQL only). */
  readonly xact: boolean;
}

/** How long one acquire may wait. */
export type Wait =
  | { readonly kind: 'try' }
  | { readonly kind: 'forever' }
  | { readonly kind: 'timed'; readonly ms: number };

/**
 * The SQL of one database family and its key conversion. A dialect runs statements through a
 * {@link SqlSession} and knows no driver; it keeps no state between calls.
 */
export interface Dialect<Key> {
  readonly name: 'postgres' | 'mysql';
  /** The user key as the database sees it; throws InvalidKeyError. */
  convertKey(key: LockKey): Key;
  /** Checks a converted key produced by a user's `convert` function; throws InvalidKeyError. */
  checkConvertedKey(value: unknown): Key;
  /** Throws InvalidOptionError for a mode the database cannot lock in. */
  checkMode(mode: LockMode): void;
  /**
   * Takes the lock on `session`. Resolves true when held, false when the wait ended without it
   * (timeout, busy, or `cancelled()` turned true and the server-side wait was cancelled). Never
   * resolves false or throws while the lock is held by this attempt.
   */
  acquire(
    session: SqlSession,
    key: Key,
    mode: LockMode,
    wait: Wait,
    cancelled: () => boolean,
  ): Promise<boolean>;
  /** Releases one hold; resolves false when the database says this session did not hold it. */
  release(session: SqlSession, key: Key, mode: LockMode): Promise<boolean>;
}

/** The driver error's `code` (SQLSTATE for pg, e.g. `ER_LOCK_DEADLOCK` for mysql2). */
export function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}

/** The MySQL error number of a mysql2 error. */
export function errorNumber(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { errno?: unknown }).errno : undefined;
}

/** The value of `column` in the first row, if any. */
export function firstRowValue(rows: Row[] | undefined, column: string): unknown {
  return rows?.[0]?.[column];
}
