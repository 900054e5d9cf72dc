import type { SqlSession } from '../drivers/types.js';
import type { Grant, LockMode } from '../dialects/dialect.js';
import {
  databaseError,
  DlockError,
  FencingUnavailableError,
  LockDeadlockError,
  LockTableFullError,
  ServerLocalLockError,
} from '../errors.js';
import { traceServerWait } from '../trace.js';
import { prepareSession } from './server-bound.js';
import type { LockRequest } from './strategy.js';

/** How one acquire on one session ended; `clean` says the session surely holds nothing of it. */
export type SessionOutcome =
  | { readonly kind: 'acquired'; readonly grant: Grant }
  | { readonly kind: 'busy' }
  | { readonly kind: 'aborted'; readonly reason: unknown; readonly clean: boolean }
  | { readonly kind: 'failed'; readonly error: DlockError; readonly clean: boolean };

/** Errors after which the database surely holds nothing for the failed attempt. */
function leavesNothingHeld(err: unknown, mode: LockMode): boolean {
  // A grant without a token is undone before FencingUnavailableError, but not a transaction's.
  if (err instanceof ServerLocalLockError) return true;
  if (err instanceof FencingUnavailableError) return !mode.xact;
  return err instanceof LockDeadlockError || err instanceof LockTableFullError;
}

/**
 * Runs the dialect's acquire on `session`. When `request.signal` aborts, the server-side wait is
 * cancelled from another connection, and a grant that raced the cancel is unlocked again. The
 * session is the strategy's to give back or close afterwards, as the outcome says.
 */
export async function acquireOnSession<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
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
    await prepareSession(session, request);
    grant = await dialect.acquire(session, key, mode, wait, () => signal.aborted);
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
