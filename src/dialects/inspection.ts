import type { SqlSession } from '../drivers/types.js';

/**
 * One session that holds a lock, as the database reports it. Fields the database does not
 * expose (or hides from the inspecting user) are null.
 */
export interface LockHolder {
  /** `'shared'` or `'exclusive'`; MySQL named locks are always exclusive. */
  readonly mode: 'exclusive' | 'shared';
  /**
   * The holding session: the PostgreSQL backend pid (`pg_backend_pid()`) or the MySQL
   * connection id (`CONNECTION_ID()`), as `pg_terminate_backend` or `KILL` take it. Null for a
   * prepared PostgreSQL transaction, which holds locks without a session.
   */
  readonly sessionId: number | null;
  /** The database user of the holding session. */
  readonly user: string | null;
  /** The database the holding session is connected to. */
  readonly database: string | null;
  /** The session's `application_name` (PostgreSQL only; null on MySQL). */
  readonly applicationName: string | null;
  /** Where the session connects from: `host:port`, or a socket path, as the server reports it. */
  readonly clientAddress: string | null;
  /** When the session connected (PostgreSQL only; MySQL does not report it). */
  readonly connectedAt: Date | null;
  /**
   * What the session is doing: PostgreSQL `state` (`idle`, `active`, `idle in transaction`, …),
   * MySQL `COMMAND` (`Sleep`, `Query`, …).
   */
  readonly state: string | null;
  /**
   * When the session entered `state`. For a session that took the lock and then went idle, as
   * `knex-dlock run` does, this is about when the lock was granted.
   */
  readonly stateSince: Date | null;
  /**
   * How long, in milliseconds, the session has sent the server nothing (PostgreSQL `idle` or
   * `idle in transaction`, MySQL `Sleep`); null while it runs a statement. A holder whose
   * health check runs stays under about a second; a large value on a held key is a stranded
   * holder, which the server drops after its bound on silent sessions.
   */
  readonly idleFor: number | null;
}

/** The sessions that hold a lock key, and those that wait for it, at one moment. */
export interface LockSessions {
  readonly holders: LockHolder[];
  /** Sessions waiting in the server for the key, in the same shape (`mode`: what they want). */
  readonly waiters: LockHolder[];
}

/** How one database family reports the holders and waiters of a lock key. Knows SQL, no driver. */
export interface Inspection<Key> {
  sessions(session: SqlSession, key: Key): Promise<LockSessions>;
  /**
   * For each key, in order, the session id of a session holding it (the lowest, for shared
   * holders), or null when it is free: one statement for all the keys.
   */
  holderIds(session: SqlSession, keys: readonly Key[]): Promise<(number | null)[]>;
}

export function textOrNull(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

export function numberOrNull(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}
