/**
 * A counting semaphore built from locks: `max` slots, each one lock (key `<key>` with the slot's
 * number, see {@link slotKey}); a holder holds one slot. An acquire first tries the slots one by
 * one, from a slot chosen by the process so that processes spread; if all are taken and it may
 * wait, it waits in the database on every slot at once and keeps the first slot granted,
 * cancelling the other waits (a grant that races the cancel is released). So a freed slot is
 * taken as soon as the database grants it, and nothing is sent while waiting. Waiters of one
 * process queue in its memory behind one database wait per slot, as locks do; between
 * processes the database decides, as for a lock.
 */
import { InvalidOptionError, LockAlreadyHeldError, LockNotHeldError } from '../../errors.js';
import type { LockKey } from '../../keys.js';
import type { BaseLock } from '../../lock/base-lock.js';
import { parseWait, type AcquireOptions } from '../../lock/options.js';
import { inspectLock } from '../inspect.js';
import type { LockTarget } from '../create-lock.js';

/** The lock key of slot `slot` of the semaphore on `key`. */
export function slotKey(key: LockKey, slot: number): string {
  return `knex-dlock:semaphore:${String(key)}:${slot}`;
}

/** Where the next acquire of this process starts trying: spreads processes over the slots. */
let nextStart = process.pid;

/**
 * At most `max` holders of one key at once, across all processes, with the lock's API: make it
 * with {@link createSemaphore}.
 */
export class Semaphore implements AsyncDisposable {
  readonly #target: LockTarget;
  readonly #slots: readonly BaseLock[];
  #held: BaseLock | undefined;
  #acquiring: { stop: AbortController; done: Promise<boolean> } | undefined;

  /** @internal Use {@link createSemaphore}. */
  constructor(
    target: LockTarget,
    /** The key as the caller gave it. */
    readonly key: LockKey,
    /** How many holders the key may have at once. */
    readonly max: number,
    slots: readonly BaseLock[],
  ) {
    this.#target = target;
    this.#slots = slots;
  }

  /**
   * The database keys of the slots, slot 0 first: what `inspectLock` or `pg_locks` /
   * `IS_USED_LOCK` show for the slots in use.
   */
  get slotKeys(): readonly (bigint | string)[] {
    return this.#slots.map((slot) => slot.actualKey);
  }

  /** Whether this object holds a slot now. */
  get locked(): boolean {
    return this.#held?.locked ?? false;
  }

  /** The slot held (0 to max − 1), while held. */
  get slot(): number | undefined {
    const held = this.#held;
    return held && held.locked ? this.#slots.indexOf(held) : undefined;
  }

  /** While held: aborts with `ERR_DLOCK_LOST` when the slot's connection dies or goes silent. */
  get signal(): AbortSignal | undefined {
    return this.#held?.signal;
  }

  /** With `fencing: true`, while held: the token of the slot's grant (increasing per slot). */
  get fencingToken(): bigint | undefined {
    return this.#held?.fencingToken;
  }

  /**
   * Takes a slot. Resolves true once held, false when `timeout` (milliseconds) passed or, with
   * `block: false`, when every slot is taken. Rejects with `signal.reason` when the signal
   * aborts, holding nothing; with `ERR_DLOCK_INVALID_OPTION` when the key is used with a larger
   * `max` elsewhere (found while every slot here is taken).
   */
  async acquire(options: AcquireOptions = {}): Promise<boolean> {
    const wait = parseWait(options);
    if (this.#acquiring || this.locked) {
      throw new LockAlreadyHeldError(
        'This semaphore object already holds a slot (or is acquiring one): release it first, ' +
          'or create another semaphore object for a second holder.',
      );
    }
    options.signal?.throwIfAborted();
    const stop = new AbortController();
    const done = this.#acquire(wait.kind === 'try', options, stop.signal);
    this.#acquiring = { stop, done };
    try {
      return await done;
    } finally {
      this.#acquiring = undefined;
    }
  }

  async #acquire(
    tryOnly: boolean,
    options: AcquireOptions,
    closing: AbortSignal,
  ): Promise<boolean> {
    const start = nextStart++ % this.max;
    for (let i = 0; i < this.max; i += 1) {
      const slot = this.#slots[(start + i) % this.max]!;
      if (await slot.acquire({ block: false })) {
        if (!closing.aborted && !options.signal?.aborted) return this.#keep(slot);
        await slot.release();
      }
      if (closing.aborted) throw closing.reason;
      options.signal?.throwIfAborted();
    }
    if (tryOnly) return false;
    await this.#checkMax();
    return this.#waitForAny(options, closing);
  }

  #keep(slot: BaseLock): true {
    this.#held = slot;
    return true;
  }

  /** A semaphore with a larger max on this key would take slot `max`: refuse to share. */
  async #checkMax(): Promise<void> {
    const beyond = await inspectLock(this.#target, slotKey(this.key, this.max));
    if (beyond.held) {
      throw new InvalidOptionError(
        `The semaphore on ${String(this.key)} is used with a larger max elsewhere (slot ` +
          `${this.max} is held), so the limit would not hold: give every semaphore on a key ` +
          `the same max (${this.max} here).`,
      );
    }
  }

  /** Waits on every slot at once; keeps the first granted and gives back any other. */
  async #waitForAny(options: AcquireOptions, closing: AbortSignal): Promise<boolean> {
    const wait = new AbortController();
    const won = new Error('another slot was granted');
    const onAbort = (signal: AbortSignal) => () => wait.abort(signal.reason);
    const outer = [options.signal, closing].filter((s): s is AbortSignal => s !== undefined);
    const detach = outer.map((signal) => {
      const listener = onAbort(signal);
      if (signal.aborted) listener();
      signal.addEventListener('abort', listener, { once: true });
      return () => signal.removeEventListener('abort', listener);
    });
    let winner: BaseLock | undefined;
    let failure: unknown;
    const timeout = options.timeout === undefined ? {} : { timeout: options.timeout };
    await Promise.all(
      this.#slots.map(async (slot) => {
        try {
          if (!(await slot.acquire({ ...timeout, signal: wait.signal }))) return;
        } catch (err) {
          if (!wait.signal.aborted) {
            failure ??= err;
            wait.abort(err);
          }
          return;
        }
        if (winner || wait.signal.aborted) {
          await slot.release().catch(() => undefined);
          return;
        }
        winner = slot;
        wait.abort(won);
      }),
    );
    for (const undo of detach) undo();
    const stopped = outer.find((signal) => signal.aborted);
    if (stopped) {
      if (winner) await winner.release().catch(() => undefined);
      throw stopped.reason;
    }
    if (winner) return this.#keep(winner);
    if (failure !== undefined) throw failure;
    return false;
  }

  /** Gives the slot back. Rejects with `ERR_DLOCK_NOT_HELD` when no slot is held. */
  async release(): Promise<void> {
    const held = this.#held;
    if (!held)
      throw new LockNotHeldError('This semaphore object holds no slot: nothing to release.');
    this.#held = undefined;
    await held.release();
  }

  /** Gives back the slot if one is held and cancels an acquire in progress; never rejects. */
  async close(): Promise<void> {
    const acquiring = this.#acquiring;
    if (acquiring) {
      acquiring.stop.abort(new LockNotHeldError('The semaphore was closed while acquiring.'));
      await acquiring.done.catch(() => undefined);
    }
    this.#held = undefined;
    await Promise.all(this.#slots.map((slot) => slot.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
