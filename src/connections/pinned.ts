/**
 * Locks behind a connection pooler in transaction mode (PgBouncer, Supavisor, RDS Proxy): the
 * pooler runs each transaction, or each statement outside one, on whichever server session is
 * free. A session-level lock taken there would be unlocked on another server session, and the
 * one holding it handed to another client. So a connection of the library's own that is behind
 * a pooler keeps a transaction open for as long as it holds or is taking a lock: the pooler
 * then keeps it on one server session, and the transaction ends (COMMIT) once it holds nothing,
 * so the server session goes back to the pooler without a lock. If the holder dies meanwhile,
 * the pooler closes the server session, which was inside a transaction, and the server frees
 * the lock. Session pooling is unaffected by the pin.
 */
import type { Pinning } from '../dialects/dialect.js';
import type { SqlSession } from '../drivers/types.js';
import { BehindPoolerError } from '../errors.js';
import type { LockRequest } from './strategy.js';

interface Pin {
  /** Acquires in flight and holds on the session. */
  users: number;
  /** Whether the transaction is the library's, begun for the pin. */
  ours: boolean;
  /** How it was begun, and so how to end it. */
  pinning: Pinning | undefined;
}

const POOLED = Symbol('behind a pooler');
const PIN = Symbol('pin');

/** Records what the session's first lock found: whether it is behind a pooler. */
export function notePooled(session: SqlSession, pooled: boolean): void {
  if (pooled) session.memo.set(POOLED, true);
}

/** Whether the session's first lock found it behind a pooler. */
export function behindPooler(session: SqlSession): boolean {
  return session.memo.has(POOLED);
}

/**
 * Whether `request` runs on `session` as behind a transaction pooler: as its `pooler` option
 * says, else when a pooler was detected (which might pool transactions: the safe guess). Then
 * a session-level lock pins a server session (see `pin`), and a blocking acquire waits by
 * trying again and again rather than in the server (see `pollBehindPooler`): a wait in the
 * server would keep a server session, and could not be cancelled on the right one.
 */
export function waitsByPolling<Key>(session: SqlSession, request: LockRequest<Key>): boolean {
  if (request.pooler !== undefined) return request.pooler === 'transaction';
  return session.memo.has(POOLED);
}

/**
 * Before an acquire on `session`: behind a pooler, begins the transaction that pins a server
 * session (a connection the library leases whole), or refuses a session-level lock on a
 * connection of the caller's own (throws). Nothing to do elsewhere: undefined, no promise.
 */
export function pin<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
  leasedWhole: boolean,
): Promise<void> | undefined {
  if (!waitsByPolling(session, request)) {
    // Session pooling keeps the client on the server session that the first lock found.
    if (session.memo.has(POOLED)) request.dialect.pinning?.stay(session);
    return undefined;
  }
  // A transaction-level lock ends with its transaction, which the pooler does not split.
  if (request.mode.xact) return undefined;
  if (!leasedWhole) throw new BehindPoolerError(behindPoolerMessage(request.label));
  let pinned = session.memo.get(PIN) as Pin | undefined;
  if (!pinned) session.memo.set(PIN, (pinned = { users: 0, ours: false, pinning: undefined }));
  pinned.users += 1;
  // Only the library runs statements on the session, so its own flag tells whether the pin's
  // transaction is open: the session's status may still show one whose COMMIT is on its way.
  if (pinned.ours) return undefined;
  const pinning = request.dialect.pinning;
  if (!pinning) return undefined;
  // Marked before it is sent: a concurrent acquire queues behind this BEGIN on the connection.
  pinned.ours = true;
  pinned.pinning = pinning;
  const state = pinned;
  return pinning.begin(session).catch((err: unknown) => {
    state.users -= 1;
    state.ours = false;
    throw err;
  });
}

/**
 * After an acquire that took nothing, or a release: once the session holds and takes nothing,
 * ends the pin's transaction, so that the pooler may hand its server session on, lock-free.
 * Undefined, no promise, when there is nothing to end.
 */
export function unpin(session: SqlSession): Promise<void> | undefined {
  const pinned = session.memo.get(PIN) as Pin | undefined;
  if (!pinned || pinned.users === 0) return undefined;
  pinned.users -= 1;
  if (pinned.users > 0 || !pinned.ours) return undefined;
  pinned.ours = false;
  return pinned.pinning?.end(session);
}

function behindPoolerMessage(label: string): string {
  return (
    `The connection of the lock ${label} reaches PostgreSQL through a pooler, which in ` +
    'transaction mode may unlock on another server session and hand this one, still locked, ' +
    'to another client; the library cannot pin a connection it does not own. Nothing was ' +
    'locked. Create the lock on the knex instance or pg.Pool (its own lock connections pin a ' +
    'server session while they hold), or use `xact: true` inside a transaction.'
  );
}
