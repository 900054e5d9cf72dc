/**
 * Several keys at once, all or none. The keys are taken one after another in the order of
 * their database keys (PostgreSQL: the int64 as a number; MySQL: the lock name byte for
 * byte), the same order in every process, so two multi-locks over overlapping keys never wait
 * for each other in a circle: whoever holds the smallest shared key goes first.
 */
import { InvalidKeyError } from '../../errors.js';
import type { BaseLock } from '../../lock/base-lock.js';
import { parseWait, type AcquireOptions } from '../../lock/options.js';

/** Orders database keys as every process does: int64 by value, names byte for byte. */
export function compareActualKeys(a: bigint | string, b: bigint | string): number {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(String(a), 'utf8'), Buffer.from(String(b), 'utf8'));
}

/** The locks of `locks` in taking order; throws InvalidKeyError for two on one database key. */
export function inTakingOrder(locks: readonly BaseLock[]): BaseLock[] {
  const sorted = [...locks].sort((a, b) => compareActualKeys(a.actualKey, b.actualKey));
  for (let i = 1; i < sorted.length; i += 1) {
    if (compareActualKeys(sorted[i - 1]!.actualKey, sorted[i]!.actualKey) === 0) {
      throw new InvalidKeyError(
        `The keys ${String(sorted[i - 1]!.key)} and ${String(sorted[i]!.key)} are the same ` +
          'database lock: a multi-lock takes each key once. Remove the duplicate.',
      );
    }
  }
  return sorted;
}

/**
 * The locks of several keys, taken and released together: `acquire()` resolves true once all
 * are held, false (holding none) when one could not be taken in time, and rejects (holding
 * none) when one rejects. `timeout` and `signal` are for the whole. Make it with
 * {@link createMultiLock}.
 */
export class MultiLock implements AsyncDisposable {
  /** The locks, in the order they are taken. */
  readonly locks: readonly BaseLock[];
  #lost: AbortController | undefined;
  #detach: (() => void)[] = [];

  /** @internal Use {@link createMultiLock}. */
  constructor(locks: readonly BaseLock[]) {
    this.locks = inTakingOrder(locks);
  }

  /** Whether every key is held now. */
  get locked(): boolean {
    return this.locks.every((lock) => lock.locked);
  }

  /**
   * While held: an AbortSignal that aborts, with its `ERR_DLOCK_LOST` error, when any of the
   * locks is lost. Undefined while not held.
   */
  get signal(): AbortSignal | undefined {
    return this.#lost?.signal;
  }

  /**
   * Takes every key, in taking order. Options as {@link BaseLock.acquire}'s, for the whole:
   * `timeout` (milliseconds) bounds the sum of the waits, `block: false` tries each key once.
   */
  async acquire(options: AcquireOptions = {}): Promise<boolean> {
    const wait = parseWait(options);
    const deadline = wait.kind === 'timed' ? performance.now() + wait.ms : undefined;
    const taken: BaseLock[] = [];
    try {
      for (const lock of this.locks) {
        const ok = await lock.acquire(remaining(wait.kind, deadline, options.signal));
        if (!ok) {
          await releaseAll(taken);
          return false;
        }
        taken.push(lock);
      }
    } catch (err) {
      await releaseAll(taken);
      throw err;
    }
    this.#watch();
    return true;
  }

  /** Releases every key, the last taken first. Rejects, after all, with the first failure. */
  async release(): Promise<void> {
    this.#unwatch();
    const failures: unknown[] = [];
    for (const lock of [...this.locks].reverse()) {
      await lock.release().catch((err: unknown) => failures.push(err));
    }
    if (failures.length > 0) throw failures[0];
  }

  /** Releases whatever is held and cancels an acquire in progress; never rejects. */
  async close(): Promise<void> {
    this.#unwatch();
    await Promise.all(this.locks.map((lock) => lock.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #watch(): void {
    const lost = new AbortController();
    this.#lost = lost;
    for (const lock of this.locks) {
      const signal = lock.signal;
      if (!signal) continue;
      const onAbort = () => lost.abort(signal.reason);
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#detach.push(() => signal.removeEventListener('abort', onAbort));
    }
  }

  #unwatch(): void {
    for (const detach of this.#detach) detach();
    this.#detach = [];
    this.#lost = undefined;
  }
}

/** One key's acquire options, out of what is left of the whole wait. */
function remaining(
  kind: 'try' | 'forever' | 'timed',
  deadline: number | undefined,
  signal: AbortSignal | undefined,
): AcquireOptions {
  const withSignal = signal ? { signal } : {};
  if (kind === 'try') return { ...withSignal, block: false };
  if (deadline === undefined) return withSignal;
  return { ...withSignal, timeout: Math.max(0, deadline - performance.now()) };
}

async function releaseAll(locks: readonly BaseLock[]): Promise<void> {
  for (const lock of [...locks].reverse()) await lock.close();
}
