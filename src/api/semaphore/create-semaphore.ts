import { detectTarget } from '../../drivers/detect.js';
import { InvalidOptionError, LockTimeoutError, UnsupportedTargetError } from '../../errors.js';
import type { LockKey } from '../../keys.js';
import {
  checkSignal,
  checkTimeout,
  type AcquireOptions,
  type LockOptions,
} from '../../lock/options.js';
import { createLock, type LockTarget } from '../create-lock.js';
import { markerKey, Semaphore, slotKey } from './semaphore.js';

/** Options of {@link createSemaphore}: `max`, and `createLock`'s for every slot. */
export interface SemaphoreOptions extends Omit<LockOptions, 'convert' | 'xact' | 'shared'> {
  /** How many holders the key may have at once: an integer of at least 1. */
  max: number;
}

/**
 * A counting semaphore: at most `max` holders of `key` at once, across all processes, with the
 * lock's API (`acquire({ timeout, signal, block })`, `release()`, `close()`, `locked`, `signal`,
 * `fencingToken`, `await using`). No table: each of the `max` slots is a lock. `target` must be
 * a pool or a knex instance, since a waiting acquire waits on every slot at once, each on a
 * lock connection of its own. Every semaphore on a key must give the same `max`.
 *
 * @example
 * ```ts
 * const exports = createSemaphore(knex, 'tenant-exports', { max: 3 });
 * if (await exports.acquire({ timeout: 10_000 })) {
 *   try { await runExport(); } finally { await exports.release(); }
 * }
 * ```
 */
export function createSemaphore(
  target: LockTarget,
  key: LockKey,
  options: SemaphoreOptions,
): Semaphore {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('createSemaphore needs options with `max`.');
  }
  const { max, ...lockOptions } = options;
  if (!Number.isInteger(max) || max < 1) {
    throw new InvalidOptionError(
      `Option "max" must be an integer of at least 1, got ${String(max)}.`,
    );
  }
  for (const name of ['convert', 'xact', 'shared'] as const) {
    if (name in lockOptions) {
      throw new InvalidOptionError(`Option "${name}" does not apply to semaphores: remove it.`);
    }
  }
  if (!detectTarget(target).pooled) {
    throw new UnsupportedTargetError(
      'A semaphore waits on all its slots at once, which needs several connections: pass the ' +
        'knex instance, pg.Pool or mysql2 pool rather than one connection or transaction.',
    );
  }
  const slots = Array.from({ length: max }, (_, slot) =>
    createLock(target, slotKey(key, slot), lockOptions),
  );
  // A marker says which max its slot's holder gives; it is never fenced.
  const markerOptions: LockOptions = { ...lockOptions };
  delete markerOptions.fencing;
  const markers = Array.from({ length: max }, (_, slot) =>
    createLock(target, markerKey(key, slot, max), markerOptions),
  );
  // Only its database key is used: slot `max` is held only by a semaphore with a larger max.
  const beyond = createLock(target, slotKey(key, max), markerOptions).actualKey;
  return new Semaphore(target, key, max, { slots, markers, beyond });
}

/** Options of {@link withSemaphore}: the semaphore's and acquire's, together. */
export type WithSemaphoreOptions = SemaphoreOptions & AcquireOptions;

/**
 * Takes a slot of the semaphore on `key`, runs `fn`, and always gives the slot back. Rejects
 * with `ERR_DLOCK_TIMEOUT` when no slot was free within `timeout` ms (or at once with
 * `block: false`), and with `ERR_DLOCK_LOST` when the slot was lost before `fn` finished.
 */
export async function withSemaphore<T>(
  target: LockTarget,
  key: LockKey,
  options: WithSemaphoreOptions,
  fn: (semaphore: Semaphore, signal: AbortSignal) => Promise<T> | T,
): Promise<T> {
  const { block, timeout, signal, ...semaphoreOptions } = options;
  checkTimeout(timeout);
  checkSignal(signal);
  const semaphore = createSemaphore(target, key, semaphoreOptions);
  const acquireOptions: AcquireOptions = {
    ...(block === undefined ? {} : { block }),
    ...(timeout === undefined ? {} : { timeout }),
    ...(signal === undefined ? {} : { signal }),
  };
  if (!(await semaphore.acquire(acquireOptions))) {
    throw new LockTimeoutError(
      `No slot of the semaphore on ${String(key)} (max ${semaphore.max}) was free` +
        (timeout === undefined || timeout <= 0 ? '.' : ` within ${timeout} ms.`) +
        ' Retry later, or pass a (longer) timeout.',
    );
  }
  const held = semaphore.signal ?? new AbortController().signal;
  try {
    const result = await fn(semaphore, held);
    if (held.aborted) throw held.reason;
    return result;
  } finally {
    await semaphore.close();
  }
}
