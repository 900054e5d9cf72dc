/**
 * A connection strategy decides which connection a lock runs on and when that connection may be
 * returned, shared or must be closed. The lock sequences calls; the dialect knows the SQL; the
 * strategy stands between them and the driver adapter.
 */
import type { Dialect, LockMode, Wait } from '../dialects/dialect.js';
import type { SqlSession } from '../drivers/types.js';
import type { HealthSchedule } from '../loss-detection.js';
import type { StopSignal } from './stop.js';

/** How a connection pooler in front of the server pools: by session or by transaction. */
export type Pooler = 'session' | 'transaction';

/** One acquire, as a lock asks its connection strategy for it. */
export interface LockRequest<Key> {
  readonly dialect: Dialect<Key>;
  readonly key: Key;
  /** The key as the caller gave it, for messages. */
  readonly label: string;
  readonly mode: LockMode;
  readonly wait: Wait;
  /**
   * Aborts when the caller's signal aborts or the lock is closed; the acquire then rejects with
   * its reason and holds nothing.
   */
  readonly signal: StopSignal;
  /** How the connection is checked while the lock is held; undefined for no checks. */
  readonly health: HealthSchedule | undefined;
  /**
   * The server's bound on a silent peer (`free`, ms) to set on the session before its first
   * lock; undefined to leave the session's settings as they are.
   */
  readonly serverBound: number | undefined;
  /**
   * Whether a lock may be taken on a server whose locks exclude only its own sessions (a
   * standby, a read-only replica, a Galera node); otherwise acquire refuses there.
   */
  readonly serverLocal: boolean;
  /**
   * What the user says stands between the connection and the server: `'transaction'` pins a
   * server session while the connection holds; undefined to go by what the first lock found.
   */
  readonly pooler: Pooler | undefined;
  /** The lock object. A shared connection frees a hold whose owner was garbage-collected. */
  readonly owner: object;
}

/**
 * What a hold keeps of its request: what releasing it needs, and nothing that would keep the
 * lock object or its signal alive.
 */
export type HeldLock<Key> = Pick<LockRequest<Key>, 'dialect' | 'key' | 'label' | 'mode' | 'health'>;

export function heldLockOf<Key>(request: LockRequest<Key>): HeldLock<Key> {
  const { dialect, key, label, mode, health } = request;
  return { dialect, key, label, mode, health };
}

/** How a release ended. */
export type ReleaseOutcome =
  /** The database released the lock. */
  | 'released'
  /** The database said this session did not hold it. */
  | 'not-held'
  /** The unlock failed, and the connection was closed, which freed the lock. */
  | 'closed';

/** A lock the database holds for one lock object, on the connection its strategy chose. */
export interface Hold {
  readonly session: SqlSession;
  /** The grant's fencing token, when the lock asked for one. */
  readonly token: bigint | undefined;
  /**
   * Unlocks in the database and lets the connection go. Rejects only when the lock may still be
   * held: a caller's connection on which the unlock failed.
   */
  release(): Promise<ReleaseOutcome>;
  /** Lets the connection go without unlocking: the database has dropped the lock already. */
  forget(): void;
  /** The lock was lost: close its connection where the library may. */
  discard(): void;
  /**
   * Calls `onLost` once if the connection fails, ends or stops answering health checks;
   * returns the unsubscribe function. A shared connection keeps `onLost` only weakly, so that a
   * lock object that is dropped can be collected: the caller keeps it alive.
   */
  watch(onLost: (cause: unknown) => void): () => void;
  /**
   * Whether the holder went so long without a health check answer that the server may have
   * ended its session (a stalled process); the lock then counts as lost at once.
   */
  stale?(): boolean;
  /** As {@link ConnectionLease.onTransactionEnding}, for a hold inside a transaction. */
  onTransactionEnding?(onEnding: () => void): () => void;
}

/** Where locks get their connections: caller-owned, transaction, pool, dedicated, multiplexed. */
export interface ConnectionStrategy {
  /**
   * Takes the lock. Resolves its hold, or undefined when the wait ended without it (timeout,
   * held elsewhere). Rejects with `request.signal.reason` when that aborts, with a DlockError
   * otherwise; a rejected acquire holds nothing.
   */
  acquire<Key>(request: LockRequest<Key>): Promise<Hold | undefined>;
}

/** What is left of a timed wait at `deadline` (a `performance.now()` time); nothing left: a try. */
export function remainingWait(wait: Wait, deadline: number | undefined): Wait {
  if (wait.kind !== 'timed' || deadline === undefined) return wait;
  const ms = deadline - performance.now();
  return ms >= 1 ? { kind: 'timed', ms } : { kind: 'try' };
}

/** When a wait gives up, as a `performance.now()` time; undefined for none. */
export function deadlineOf(wait: Wait): number | undefined {
  return wait.kind === 'timed' ? performance.now() + wait.ms : undefined;
}
