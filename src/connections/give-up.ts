import type { StopSignal } from './stop.js';

/**
 * Waits for `pending` (a connection being borrowed or opened) but gives up when `deadline` (a
 * `performance.now()` time) passes — resolving undefined — or when `signal` aborts — rejecting
 * with its reason. What arrives after that is handed to `late`, so that nothing leaks.
 */
export async function waitOrGiveUp<T>(
  pending: Promise<T>,
  deadline: number | undefined,
  signal: StopSignal,
  late: (value: T) => void,
): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const givenUp = new Promise<undefined>((resolve, reject) => {
    if (deadline !== undefined) {
      timer = setTimeout(resolve, Math.max(0, deadline - performance.now()), undefined);
    }
    onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  let settled = false;
  try {
    const value = await Promise.race([pending, givenUp]);
    settled = value !== undefined;
    return value;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener('abort', onAbort);
    if (!settled) pending.then(late, () => undefined);
  }
}
