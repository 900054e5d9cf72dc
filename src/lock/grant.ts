/** One acquire's trip to the connection strategy: traced, with its errors made the library's. */
import type { ConnectionStrategy, Hold, LockRequest } from '../connections/strategy.js';
import { databaseError, DlockError } from '../errors.js';
import { traceAcquire } from '../trace.js';

/**
 * Asks `strategy` for a hold on `request`: the hold, or undefined when the wait ended without
 * it. A failure that is neither the library's own error nor the caller's abort reason becomes
 * a LockDatabaseError, so that callers see one kind of error whatever the driver threw.
 */
export async function requestHold<Key>(
  strategy: ConnectionStrategy,
  request: LockRequest<Key>,
): Promise<Hold | undefined> {
  const trace = traceAcquire(request.label, request.wait);
  let hold: Hold | undefined;
  try {
    hold = await strategy.acquire(request);
  } catch (err) {
    trace?.failed(err);
    const { signal } = request;
    throw err instanceof DlockError || (signal.aborted && err === signal.reason)
      ? err
      : databaseError('Acquiring the lock', err);
  }
  if (hold) trace?.granted(hold.session);
  else trace?.notGranted();
  return hold;
}
