import { setTimeout as sleep } from 'node:timers/promises';
import type { SqlSession } from '../drivers/types.js';
import type { Grant, LockMode, Wait } from '../dialects/dialect.js';
import {
  BehindPoolerError,
  databaseError,
  DlockError,
  FencingUnavailableError,
  LockDeadlockError,
  LockTableFullError,
  ServerLocalLockError,
} from '../errors.js';
import { traceServerWait } from '../trace.js';
import type { StatementBatches } from './batches.js';
import { waitOrGiveUp } from './give-up.js';
import { pin, unpin, waitsByPolling } from './pinned.js';
import { prepareSession } from './server-bound.js';
import { deadlineOf, type LockRequest } from './strategy.js';

/** How one acquire on one session ended; `clean` says the session surely holds nothing of it. */
export type SessionOutcome =
  | { readonly kind: 'acquired'; readonly grant: Grant }
  | { readonly kind: 'busy' }
  | { readonly kind: 'aborted'; readonly reason: unknown; readonly clean: boolean }
  | { readonly kind: 'failed'; readonly error: DlockError; readonly clean: boolean };

/** Errors after which the database surely holds nothing for the failed attempt. */
function leavesNothingHeld(err: unknown, mode: LockMode): boolean {
  // A grant without a token is undone before FencingUnavailableError, but not a transaction's.
  if (err instanceof ServerLocalLockError || err instanceof BehindPoolerError) return true;
  if (err instanceof FencingUnavailableError) return !mode.xact;
  return err instanceof LockDeadlockError || err instanceof LockTableFullError;
}

/**
 * Runs the dialect's acquire on `session`, readied for it first (see `prepareSession`; behind a
 * pooler, `pin`). When `request.signal` aborts, the server-side wait is cancelled from another
 * connection, and a grant that raced the cancel is unlocked again. The session is the
 * strategy's to give back or close afterwards, as the outcome says. `leasedWhole` says that
 * nothing but the library's locks runs on the session while it is lent to them. A try goes
 * through `batches`, when given, to share a statement with other tries of the session.
 */
export async function acquireOnSession<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
  leasedWhole: boolean,
  batches?: StatementBatches,
): Promise<SessionOutcome> {
  if (request.signal.aborted) {
    return { kind: 'aborted', reason: request.signal.reason, clean: true };
  }
  try {
    // Awaited only when there is something to do: the first lock on a session.
    const preparing = prepareSession(session, request);
    if (preparing) await preparing;
  } catch (err) {
    return failed(err, request.mode);
  }
  if (request.wait.kind !== 'try' && waitsByPolling(session, request)) {
    return pollBehindPooler(session, request, leasedWhole);
  }
  return pinnedAttempt(session, request, leasedWhole, batches);
}

function failed(err: unknown, mode: LockMode): SessionOutcome {
  const error = err instanceof DlockError ? err : databaseError('Acquiring the lock', err);
  return { kind: 'failed', error, clean: leavesNothingHeld(err, mode) };
}

/** The first pause between the tries of a wait behind a pooler, in ms; then 1.5 times longer. */
const FIRST_POLL_MS = 20;
/** The longest pause between them, in ms. */
const LAST_POLL_MS = 250;
const TRY: Wait = { kind: 'try' };

/**
 * A wait behind a pooler: tries, each in a pin of its own that ends at once when the key is
 * busy, with pauses between them. A wait in the server would keep one of the pooler's server
 * sessions for as long as it waits, and a few waiters could then take every server session the
 * holder needs to finish its work under the lock.
 */
async function pollBehindPooler<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
  leasedWhole: boolean,
): Promise<SessionOutcome> {
  const deadline = deadlineOf(request.wait);
  const attempt = { ...request, wait: TRY };
  for (let pause = FIRST_POLL_MS; ; pause = Math.min(pause * 1.5, LAST_POLL_MS)) {
    const outcome = await pinnedAttempt(session, attempt, leasedWhole);
    if (outcome.kind !== 'busy') return outcome;
    const left = deadline === undefined ? pause : Math.min(pause, deadline - performance.now());
    if (left <= 0) return outcome;
    try {
      await waitOrGiveUp(sleep(left), undefined, request.signal, () => undefined);
    } catch (reason) {
      return { kind: 'aborted', reason, clean: true };
    }
  }
}

/** One attempt on `session`, pinned to one server session behind a pooler (see pinned.ts). */
async function pinnedAttempt<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
  leasedWhole: boolean,
  batches?: StatementBatches,
): Promise<SessionOutcome> {
  try {
    await pin(session, request, leasedWhole);
  } catch (err) {
    return failed(err, request.mode);
  }
  const outcome = await attemptOnSession(session, request, batches);
  if (outcome.kind === 'acquired' || (outcome.kind !== 'busy' && !outcome.clean)) return outcome;
  // Nothing taken: the pin's transaction ends if nothing else holds the session.
  try {
    await unpin(session);
  } catch (err) {
    return outcome.kind === 'busy'
      ? { kind: 'failed', error: databaseError('Ending the lock transaction', err), clean: false }
      : { ...outcome, clean: false };
  }
  return outcome;
}

async function attemptOnSession<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
  batches: StatementBatches | undefined,
): Promise<SessionOutcome> {
  const { signal, wait, dialect, key, mode } = request;
  if (signal.aborted) return { kind: 'aborted', reason: signal.reason, clean: true };
  let cancelling: Promise<void> | undefined;
  // A try returns at once by itself. A failed cancel is ignored: the wait then simply ends on
  // its own terms.
  const onAbort = () => void (cancelling = dialect.cancel(session).catch(() => undefined));
  if (wait.kind !== 'try') {
    signal.addEventListener('abort', onAbort, { once: true });
    traceServerWait(request.label, session, wait);
  }
  let grant: Grant | false;
  try {
    const cancelled = () => signal.aborted;
    grant = await (wait.kind === 'try' && batches
      ? batches.try(dialect, key, mode, cancelled)
      : dialect.acquire(session, key, mode, wait, cancelled));
  } catch (err) {
    await cancelling;
    const clean = leavesNothingHeld(err, mode);
    if (signal.aborted) return { kind: 'aborted', reason: signal.reason, clean };
    const error = err instanceof DlockError ? err : databaseError('Acquiring the lock', err);
    return { kind: 'failed', error, clean };
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  // The cancel must land before anything else runs on this connection.
  await cancelling;
  if (!signal.aborted) return grant ? { kind: 'acquired', grant } : { kind: 'busy' };
  if (!grant) return { kind: 'aborted', reason: signal.reason, clean: true };
  const undone = await dialect.release(session, key, mode).then(
    () => true,
    () => false,
  );
  return { kind: 'aborted', reason: signal.reason, clean: undone };
}
