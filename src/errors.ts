/**
 * Every error that knex-dlock throws is a {@link DlockError} with a stable `code`, so callers
 * can branch on `err.code` without parsing messages.
 *
 * @example
 * ```ts
 * try {
 *   await lock.release();
 * } catch (err) {
 *   if (err instanceof DlockError && err.code === 'ERR_DLOCK_NOT_HELD') {
 *     // nothing to release
 *   }
 * }
 * ```
 */
export class DlockError extends Error {
  /** A stable machine-readable code, e.g. `ERR_DLOCK_NOT_HELD`. */
  readonly code: DlockErrorCode;

  constructor(code: DlockErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Every `code` a {@link DlockError} can carry. */
export type DlockErrorCode =
  | 'ERR_DLOCK_NOT_HELD'
  | 'ERR_DLOCK_ALREADY_HELD'
  | 'ERR_DLOCK_TIMEOUT'
  | 'ERR_DLOCK_INVALID_KEY'
  | 'ERR_DLOCK_INVALID_OPTION'
  | 'ERR_DLOCK_UNSUPPORTED_TARGET'
  | 'ERR_DLOCK_LOST'
  | 'ERR_DLOCK_DEADLOCK'
  | 'ERR_DLOCK_LOCK_TABLE_FULL'
  | 'ERR_DLOCK_POOL_TIMEOUT'
  | 'ERR_DLOCK_FENCING_UNAVAILABLE'
  | 'ERR_DLOCK_SERVER_LOCAL'
  | 'ERR_DLOCK_BEHIND_POOLER'
  | 'ERR_DLOCK_DATABASE';

/** `release()` was called on a lock object that does not hold its lock. */
export class LockNotHeldError extends DlockError {
  constructor(message: string) {
    super('ERR_DLOCK_NOT_HELD', message);
  }
}

/** `acquire()` was called on a lock object that already holds (or is acquiring) its lock. */
export class LockAlreadyHeldError extends DlockError {
  constructor(message: string) {
    super('ERR_DLOCK_ALREADY_HELD', message);
  }
}

/** `withLock(..., { timeout })` could not take the lock in time. */
export class LockTimeoutError extends DlockError {
  constructor(message: string) {
    super('ERR_DLOCK_TIMEOUT', message);
  }
}

/** The key cannot be turned into a database lock key (wrong type, out of range, ...). */
export class InvalidKeyError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_INVALID_KEY', message, options);
  }
}

/** An option is unknown, malformed, or not supported by the database or target. */
export class InvalidOptionError extends DlockError {
  constructor(message: string) {
    super('ERR_DLOCK_INVALID_OPTION', message);
  }
}

/** `createLock` received something it cannot take a lock through. */
export class UnsupportedTargetError extends DlockError {
  constructor(message: string) {
    super('ERR_DLOCK_UNSUPPORTED_TARGET', message);
  }
}

/** The lock was held, but its connection died or was killed: the database no longer holds it. */
export class LockLostError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_LOST', message, options);
  }
}

/** The database found a deadlock between lock waits and chose this one to fail. */
export class LockDeadlockError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_DEADLOCK', message, options);
  }
}

/**
 * The database has no room left for another lock: PostgreSQL's shared lock table is full
 * ("out of shared memory", SQLSTATE 53200). Nothing was taken; release locks, or raise
 * `max_locks_per_transaction` on the server.
 */
export class LockTableFullError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_LOCK_TABLE_FULL', message, options);
  }
}

/**
 * The application's pool had no connection to lend within its own acquire timeout (knex's
 * `acquireConnectionTimeout`, pg.Pool's `connectionTimeoutMillis`), with `connection: 'pool'`.
 * An acquire with a timeout resolves false instead. Nothing was sent to the database.
 */
export class PoolTimeoutError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_POOL_TIMEOUT', message, options);
  }
}

/** The pool of `description` timed out lending a connection: `cause` is the pool's error. */
export function poolTimeout(description: string, cause: unknown): PoolTimeoutError {
  return new PoolTimeoutError(
    `${description} had no free connection within its pool's acquire timeout, so the lock ` +
      'could not even ask the database. Give the pool more connections, pass a timeout to ' +
      "acquire() (it then resolves false), or use the default connection: 'multiplexed', " +
      "which does not borrow the application's connections.",
    { cause },
  );
}

/**
 * A lock with `fencing: true` was granted but no fencing token could be taken for it (the
 * token store is missing and cannot be created here, the session is read-only, or it is inside
 * a transaction that would roll the token back). The lock is not kept: a session-level grant is
 * released again before this rejects.
 */
export class FencingUnavailableError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_FENCING_UNAVAILABLE', message, options);
  }
}

/**
 * Why a server's locks would exclude only the sessions of that one server: a PostgreSQL hot
 * standby (`'standby'`), a MySQL / MariaDB server with `read_only` on, usually a replica
 * (`'read-only'`), or a MariaDB Galera node, whose named locks are not cluster-wide
 * (`'galera'`).
 */
export type ServerLocality = 'standby' | 'read-only' | 'galera';

/**
 * The connection's server cannot take a lock that excludes the other servers of its
 * deployment (see {@link ServerLocality}); nothing was taken. Point the locks at the primary
 * (`configureLockConnections(target, { connection })`), or pass `serverLocal: true` for locks
 * meant to exclude only the sessions of that one server.
 */
export class ServerLocalLockError extends DlockError {
  /** What makes the server's locks local to it. */
  readonly reason: ServerLocality;

  constructor(reason: ServerLocality, message: string) {
    super('ERR_DLOCK_SERVER_LOCAL', message);
    this.reason = reason;
  }
}

/**
 * A session-level lock on a connection of the caller's own that reaches PostgreSQL through a
 * pooler (PgBouncer, Supavisor, RDS Proxy): in transaction mode the pooler may run the unlock
 * on another server session and hand the one that holds the lock to another client, and the
 * library cannot tell that mode from session mode, nor pin a connection it does not own. Nothing
 * was locked. Create the lock on the knex instance or pg.Pool instead (the library's own lock
 * connections keep one server session for as long as they hold a lock), or take a
 * transaction-level lock (`xact: true`) inside a transaction.
 */
export class BehindPoolerError extends DlockError {
  constructor(message: string) {
    super('ERR_DLOCK_BEHIND_POOLER', message);
  }
}

/** The database or driver failed in a way the library did not expect; see `cause`. */
export class LockDatabaseError extends DlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DLOCK_DATABASE', message, options);
  }
}

/** Wraps an unknown driver error, keeping it as `cause`. */
export function databaseError(action: string, cause: unknown): LockDatabaseError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new LockDatabaseError(`${action} failed: ${detail}`, { cause });
}
