import type { Row, SqlSession } from '../drivers/types.js';
import { InvalidOptionError, type ServerLocality } from '../errors.js';
import type { LockKey } from '../keys.js';
import type { LockSessions } from './inspection.js';

/** Which kind of lock to take; both flags default to false. */
export interface LockMode {
  /** Shared locks do not exclude each other, only exclusive ones (PostgreSQL only). */
  readonly shared: boolean;
  /** Held until the current transaction ends instead of until released (PostgreSQL only). */
  readonly xact: boolean;
  /** Each grant takes a fencing token, larger than every earlier grant's of the key. */
  readonly fencing?: boolean;
}

/** A lock the database granted: with its fencing token, when the mode asks for one. */
export interface Grant {
  readonly token: bigint | undefined;
}

/** The grant of a lock without fencing. */
export const GRANTED: Grant = Object.freeze({ token: undefined });

/** How long one acquire may wait. */
export type Wait =
  | { readonly kind: 'try' }
  | { readonly kind: 'forever' }
  | { readonly kind: 'timed'; readonly ms: number };

/** What a database's locks can do beyond exclusive session-level locks. */
export interface DialectCapabilities {
  /** Shared locks, which exclude only exclusive ones. */
  readonly shared: boolean;
  /** Transaction-level locks, held until the transaction ends. */
  readonly xact: boolean;
  /** Fencing tokens for locks taken inside a transaction (which must not roll them back). */
  readonly fencingInTransactions: boolean;
}

/** Where a family's fencing tokens come from, in the words of messages. */
export interface FencingStore {
  /** What exists once set up, e.g. `sequence knex_dlock_fencing`. */
  readonly what: string;
  /** The statement that creates it if it is missing. */
  readonly setup: string;
  /** What the users that lock need on it, with `<user>` for their name. */
  readonly grant: string;
}

/**
 * How a family's server drops the session of a peer that went silent (a partition, a host that
 * vanished), so that a dead holder's locks are freed within `free` milliseconds of its last
 * answered health check rather than after hours of server defaults.
 */
export interface ServerBounds {
  /** The default `free`, in milliseconds. */
  readonly defaultFree: number;
  /** The soonest, in milliseconds after the holder's last answered check, the server may drop it. */
  soonest(free: number): number;
  /**
   * How long a holder that is stalled but still connected (a blocked event loop, SIGSTOP) keeps
   * its session, in milliseconds; undefined when its kernel's TCP answers keep it for ever.
   */
  stallLimit(free: number): number | undefined;
  /** Whether a healthy holder that sends nothing would lose its session: then it must ping. */
  readonly needsHealthCheck: boolean;
  /**
   * Readies `session` for its first lock, in as few round trips as the family allows (one on
   * PostgreSQL): sets its bounds for `free` (unless undefined) and tells what the server is.
   */
  prepare(session: SqlSession, free: number | undefined): Promise<SessionFacts>;
}

/** What {@link ServerBounds.prepare} found out about a session's server. */
export interface SessionFacts {
  /** What makes the server's locks local to it, if anything (a standby, a replica, a Galera node). */
  readonly locality: ServerLocality | undefined;
  /**
   * Whether the session reaches its server through a connection pooler (PgBouncer and the
   * like), which may run its statements on other server sessions between transactions.
   */
  readonly pooled: boolean;
}

/**
 * How a session behind a pooler keeps one server session while it holds locks: a transaction
 * that the pooler does not split (see connections/pinned.ts).
 */
export interface Pinning {
  /** Begins the transaction that pins the session, and learns which server session it got. */
  begin(session: SqlSession): Promise<void>;
  /** Ends it: the pooler may then hand the server session to another client. */
  end(session: SqlSession): Promise<void>;
  /**
   * The pooler pools sessions: the server session `prepare` found stays the client's, and a
   * wait is cancelled there.
   */
  stay(session: SqlSession): void;
}

/** One lock of a batch: its key and mode. */
export interface BatchItem<Key> {
  readonly key: Key;
  readonly mode: LockMode;
}

/**
 * What a batched try answered for one key: its grant, false when the key was busy, or a
 * promise of the grant when its fencing token must still be taken (which may reject for that
 * key alone, with its grant undone).
 */
export type BatchedTry = Grant | false | Promise<Grant>;

/** What one batch statement answered, in the order of its requests. */
export interface BatchAnswers {
  /** Per release, whether the session held the key. */
  readonly released: readonly boolean[];
  /**
   * Per try, its answer; undefined when the tries failed as a whole and what they took was
   * undone, so that each can run on its own.
   */
  readonly tried: readonly BatchedTry[] | undefined;
}

/**
 * Releases and tries of many keys on one session in one statement. The keys of one batch are
 * distinct, and the session holds none of the tried ones.
 */
export interface Batching<Key> {
  /** Whether a lock in `mode` may join a batch. */
  batches(mode: LockMode): boolean;
  /**
   * Runs the releases, then the tries (without waiting), in one statement. Rejects when what
   * the session holds can no longer be told: the connection failed, or the statement failed
   * where a release may or may not have run.
   */
  run(
    session: SqlSession,
    releases: readonly BatchItem<Key>[],
    tries: readonly BatchItem<Key>[],
  ): Promise<BatchAnswers>;
}

/**
 * One database family: its SQL, key conversion, inspection, capabilities, cancel and ping, and
 * the meaning of its error codes. A dialect runs statements through a {@link SqlSession} and
 * knows no driver; what it remembers of a connection lives in `session.memo`.
 */
export interface Dialect<Key> {
  /** The registry's name of the family, e.g. `'postgres'`. */
  readonly name: string;
  /** The family in messages, e.g. "PostgreSQL". */
  readonly title: string;
  readonly capabilities: DialectCapabilities;
  /** The user key as the database sees it; throws InvalidKeyError. */
  convertKey(key: LockKey): Key;
  /** Checks a converted key produced by a user's `convert` function; throws InvalidKeyError. */
  checkConvertedKey(value: unknown): Key;
  /** The database key in messages, e.g. `PostgreSQL advisory key 42`. */
  describeKey(key: Key): string;
  /**
   * Takes the lock on `session`. Resolves its grant when held, false when the wait ended
   * without it (timeout, busy, or `cancelled()` turned true and the server-side wait was
   * cancelled). Never resolves false or throws while the lock is held by this attempt, except a
   * transaction-level grant, which nothing can undo before its transaction ends.
   */
  acquire(
    session: SqlSession,
    key: Key,
    mode: LockMode,
    wait: Wait,
    cancelled: () => boolean,
  ): Promise<Grant | false>;
  /** Releases one hold; resolves false when the database says this session did not hold it. */
  release(session: SqlSession, key: Key, mode: LockMode): Promise<boolean>;
  /**
   * Asks the server to cancel the statement running on `session`, from another connection.
   * Resolves once the request was delivered; the running statement then fails or returns early.
   */
  cancel(session: SqlSession): Promise<void>;
  /** Resolves when the server answers a no-op on `session` (for health checks). */
  ping(session: SqlSession): Promise<void>;
  /** How the server can be made to drop a silent peer's session, and its locks, in time. */
  readonly serverBounds: ServerBounds;
  /** Where a family's sessions may sit behind a pooler (see {@link SessionFacts.pooled}). */
  readonly pinning?: Pinning;
  readonly fencingStore: FencingStore;
  /**
   * Every session holding `key`, and every session waiting for it in the server, as the server
   * reports them; takes and waits for no lock.
   */
  sessions(session: SqlSession, key: Key): Promise<LockSessions>;
  /** For each key, the session id of one holder or null: one statement, takes no lock. */
  holderIds(session: SqlSession, keys: readonly Key[]): Promise<(number | null)[]>;
  /** Tries and releases of many keys in one statement each, where the family can. */
  readonly batching?: Batching<Key>;
}

/** Throws InvalidOptionError for a mode that `dialect`'s locks cannot take. */
export function checkMode(dialect: Dialect<unknown>, mode: LockMode): void {
  const { shared, xact } = dialect.capabilities;
  if (mode.shared && !shared) {
    throw new InvalidOptionError(
      `${dialect.title} locks are exclusive only: remove \`shared: true\`.`,
    );
  }
  if (mode.xact && !xact) {
    throw new InvalidOptionError(
      `${dialect.title} locks are session level only: remove \`xact: true\`.`,
    );
  }
}

/**
 * Cancels the statement running on `session` with `sql` (whose one parameter is the server's
 * session id) sent from a short-lived second connection; or with the driver's own cancel
 * request, for a driver that cannot name its session.
 */
export async function cancelFromElsewhere(
  session: SqlSession,
  sql: string,
  serverId: number | undefined = session.serverId,
): Promise<void> {
  if (session.requestCancel) return session.requestCancel();
  if (serverId === undefined) return;
  const sibling = await session.openSibling();
  try {
    await sibling.query(sql, [serverId]);
  } finally {
    await sibling.close();
  }
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
