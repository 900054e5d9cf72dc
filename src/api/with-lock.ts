import type { LockKey } from '../keys.js';
import { createLock, type LockTarget } from './create-lock.js';
import { LockLostError, LockTimeoutError } from '../errors.js';
import type { BaseLock } from '../lock/base-lock.js';
import {
  checkSignal,
  checkTimeout,
  type AcquireOptions,
  type LockOptions,
} from '../lock/options.js';

/** Options of {@link withLock}: the lock's options and acquire's, together. */
export type WithLockOptions = LockOptions & AcquireOptions;

/**
 * Takes the lock, runs `fn`, and always closes the lock afterwards. Rejects with
 * `ERR_DLOCK_TIMEOUT` if the lock could not be taken within `timeout` milliseconds (or at once,
 * with `block: false`), and with `ERR_DLOCK_LOST` if the lock was lost before `fn` finished.
 * `fn` receives the lock and an AbortSignal that aborts when the lock is lost.
 *
 * @example
 * ```ts
 * await withLock(knex, 'nightly-report', async (lock, signal) => {
 *   await buildReport({ signal });
 * }, { timeout: 10_000 });
 * ```
 */
export async function withLock<T>(
  target: LockTarget,
  key: LockKey,
  fn: (lock: BaseLock, signal: AbortSignal) => Promise<T> | T,
  options: WithLockOptions = {},
): Promise<T> {
  const { block, timeout, signal, ...lockOptions } = options;
  checkTimeout(timeout);
  checkSignal(signal);
  const lock = createLock(target, key, lockOptions);
  const acquireOptions: AcquireOptions = { block, timeout, signal };
  for (const name of ['block', 'timeout', 'signal'] as const) {
    if (acquireOptions[name] === undefined) delete acquireOptions[name];
  }
  if (!(await lock.acquire(acquireOptions))) {
    throw new LockTimeoutError(
      timeout === undefined || timeout <= 0
        ? `The lock on ${String(key)} is held elsewhere. Retry later, or pass a timeout to wait.`
        : `Timed out after ${timeout} ms waiting for the lock on ${String(key)}: ` +
            'another holder kept it; retry later or raise the timeout.',
    );
  }
  const held = lock.signal ?? new AbortController().signal;
  try {
    const result = await fn(lock, held);
    if (held.aborted) throw held.reason as LockLostError;
    return result;
  } catch (err) {
    if (held.aborted && !(err instanceof LockLostError)) throw held.reason;
    throw err;
  } finally {
    await lock.close();
  }
}
