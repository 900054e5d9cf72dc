import type { ConnectionLease, Driver } from './drivers/types.js';

function giveBackWhenItArrives(leasing: Promise<ConnectionLease>): void {
  leasing.then(
    (late) => late.release(),
    () => undefined,
  );
}

/**
 * Borrows a connection from `driver`, giving up when `deadline` (a `performance.now()` time)
 * passes — resolving undefined — or when `signal` aborts or the interrupt handed to
 * `onInterruptible` is called — rejecting with their reason. A connection that arrives after
 * that is given straight back.
 */
export async function borrowConnection(
  driver: Driver,
  deadline?: number,
  signal?: AbortSignal,
  onInterruptible?: (interrupt: (reason: unknown) => void) => void,
): Promise<ConnectionLease | undefined> {
  const leasing = driver.lease();
  // A connection that is not pooled is lent at once: nothing to race.
  if (!driver.pooled || (deadline === undefined && !signal && !onInterruptible)) return leasing;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const givenUp = new Promise<undefined>((resolve, reject) => {
    if (deadline !== undefined) {
      timer = setTimeout(resolve, Math.max(0, deadline - performance.now()), undefined);
    }
    onAbort = () => reject(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    onInterruptible?.(reject);
  });
  try {
    const lease = await Promise.race([leasing, givenUp]);
    if (!lease) giveBackWhenItArrives(leasing);
    return lease;
  } catch (err) {
    giveBackWhenItArrives(leasing);
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}
