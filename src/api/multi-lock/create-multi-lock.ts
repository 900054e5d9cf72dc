import { InvalidKeyError } from '../../errors.js';
import type { LockKey } from '../../keys.js';
import type { LockOptions } from '../../lock/options.js';
import { createLock, type LockTarget } from '../create-lock.js';
import { MultiLock } from './multi-lock.js';

/**
 * A lock on several keys at once: all of them or none, taken in an order that cannot deadlock
 * against another multi-lock over overlapping keys, with one timeout and one signal for the
 * whole, and released together. `options` are `createLock`'s, for every key (`shared` where
 * the dialect has it). Throws for no keys, or two keys that are the same database lock.
 *
 * @example
 * ```ts
 * const transfer = createMultiLock(knex, [`account:${from}`, `account:${to}`]);
 * if (await transfer.acquire({ timeout: 5_000 })) {
 *   try { await move(from, to, amount); } finally { await transfer.release(); }
 * }
 * ```
 */
export function createMultiLock(
  target: LockTarget,
  keys: readonly LockKey[],
  options: LockOptions = {},
): MultiLock {
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new InvalidKeyError('createMultiLock needs an array of one key or more.');
  }
  return new MultiLock(keys.map((key) => createLock(target, key, options)));
}
