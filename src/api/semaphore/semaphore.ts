/**
 * A counting semaphore built from locks: `max` slots, each one lock (key `<key>` with the slot's
 * number, see {@link slotKey}); a holder holds one slot. An acquire first tries the slots one by
 * one, from a slot chosen by the process so that processes spread; if all are taken and it may
 * wait, it waits in the database on every slot at once and keeps the first slot granted,
 * cancelling the other waits (a grant that races the cancel is released). So a freed slot is
 * taken as soon as the database grants it, and nothing is sent while waiting. Waiters of one
 * process queue in its memory behind one database wait per slot, as locks do; between
 * processes the database decides, as for a lock.
 *
 * Every semaphore on a key must give the same max. To notice one that does not, the holder of
 * slot i also holds a marker lock named after i and its max; an acquire then reads, in one
 * statement, who holds each slot, each slot's marker for its own max, and slot `max`. A slot
 * held without the marker of this max belongs to a semaphore with another max (after a second
 * looks over about a second rule out a holder between its two grants); slot `max` held means a
 * larger max. Whichever side acquires while the other holds a slot it can see is refused.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  InvalidOptionError,
  LockAlreadyHeldError,
  LockNotHeldError,
  LockTimeoutError,
} from '../../errors.js';
import type { LockKey } from '../../keys.js';
import type { BaseLock } from '../../lock/base-lock.js';
import { parseWait, type AcquireOptions } from '../../lock/options.js';
import { holderIdsOf } from '../inspect.js';
import type { LockTarget } from '../create-lock.js';

/** The lock key of slot `slot` of the semaphore on `key`. */
export function slotKey(key: LockKey, slot: number): string {
  return `knex-dlock:semaphore:${String(key)}:${slot}`;
}

/** The lock key of the marker that the holder of `slot` of a semaphore with `max` holds. */
export function markerKey(key: LockKey, slot: number, max: number): string {
  return `knex-dlock:semaphore:${String(key)}:${slot}:max:${max}`;
}

/** The locks a semaphore is made of (see {@link Semaphore}). */
export interface SemaphoreLocks {
  readonly slots: readonly BaseLock[];
  /** Slot i's marker for this max. */
  readonly markers: readonly BaseLock[];
  /** The database key of slot `max`. */
  readonly beyond: bigint | string;
}

/**
 * The pauses before each further look at a slot held without its marker, before it counts as
 * another max's: together far longer than a holder takes between its slot's grant and its
 * marker's (one round trip), while the first look after one such round trip usually clears it.
 */
const LOOK_AGAIN_MS = [20, 40, 80, 160, 320, 640];

/** How long a granted slot waits for its marker, held by a holder that lost that slot. */
const MARKER_WAIT_MS = 10_000;

/** One slot held: the slot, its marker, and the signal that aborts when either is lost. */
interface Held {
  readonly index: number;
  readonly slot: BaseLock;
  readonly marker: BaseLock;
  readonly lost: AbortController;
  readonly detach: () => void;
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
  readonly #markers: readonly BaseLock[];
  readonly #beyond: bigint | string;
  #held: Held | undefined;
  #acquiring: { stop: AbortController; done: Promise<boolean> } | undefined;

  /** @internal Use {@link createSemaphore}. */
  constructor(
    target: LockTarget,
    /** The key as the caller gave it. */
    readonly key: LockKey,
    /** How many holders the key may have at once. */
    readonly max: number,
    locks: SemaphoreLocks,
  ) {
    this.#target = target;
    this.#slots = locks.slots;
    this.#markers = locks.markers;
    this.#beyond = locks.beyond;
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
    const held = this.#held;
    return held !== undefined && !held.lost.signal.aborted && held.slot.locked;
  }

  /** The slot held (0 to max − 1), while held. */
  get slot(): number | undefined {
    return this.locked ? this.#held?.index : undefined;
  }

  /**
   * While held: aborts with `ERR_DLOCK_LOST` when the connection of the slot (or of its marker)
   * dies or goes silent.
   */
  get signal(): AbortSignal | undefined {
    return this.#held?.lost.signal;
  }

  /** With `fencing: true`, while held: the token of the slot's grant (increasing per slot). */
  get fencingToken(): bigint | undefined {
    return this.#held?.slot.fencingToken;
  }

  /**
   * Takes a slot. Resolves true once held, false when `timeout` (milliseconds) passed or, with
   * `block: false`, when every slot is taken. Rejects with `signal.reason` when the signal
   * aborts, holding nothing; with `ERR_DLOCK_INVALID_OPTION`, holding nothing, when the key is
   * used with another `max` by a holder of a slot this semaphore can see.
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
      const index = (start + i) % this.max;
      const slot = this.#slots[index]!;
      if (await slot.acquire({ block: false })) {
        if (!closing.aborted && !options.signal?.aborted) return this.#claim(index, options);
        await slot.release();
      }
      if (closing.aborted) throw closing.reason;
      options.signal?.throwIfAborted();
    }
    if (tryOnly) return false;
    // Every slot is taken: by holders with another max, perhaps, who would make the wait vain.
    await this.#checkPeers(undefined, options.signal);
    const index = await this.#waitForAny(options, closing);
    return index === undefined ? false : this.#claim(index, options);
  }

  /**
   * Slot `index` was granted: takes its marker and, at the same time, checks the other slots'
   * holders' max. Holds the slot and its marker when it resolves; holds neither when it rejects.
   */
  async #claim(index: number, options: AcquireOptions): Promise<true> {
    const slot = this.#slots[index]!;
    const marker = this.#markers[index]!;
    const [marked, checked] = await Promise.allSettled([
      marker.acquire({ timeout: MARKER_WAIT_MS }),
      this.#checkPeers(index, options.signal),
    ]);
    if (checked.status === 'rejected' || marked.status === 'rejected' || !marked.value) {
      await Promise.all([marker.close(), slot.close()]);
      if (checked.status === 'rejected') throw checked.reason;
      if (marked.status === 'rejected') throw marked.reason;
      throw new LockTimeoutError(
        `Slot ${index} of the semaphore on ${String(this.key)} was granted, but its marker stayed ` +
          `held for ${MARKER_WAIT_MS} ms by a holder that lost the slot and has not noticed yet: ` +
          'retry the acquire.',
      );
    }
    this.#held = this.#hold(index, slot, marker);
    return true;
  }

  /** The held slot, with one signal for the loss of the slot or its marker. */
  #hold(index: number, slot: BaseLock, marker: BaseLock): Held {
    const lost = new AbortController();
    const parts = [slot.signal, marker.signal].filter((s): s is AbortSignal => s !== undefined);
    const onLoss = (signal: AbortSignal) => () => {
      lost.abort(signal.reason);
      // Neither lock means anything alone: give back the survivor, so no peer sees a slot held
      // without its marker.
      void Promise.all([slot.close(), marker.close()]);
    };
    const listeners = parts.map((signal) => {
      const listener = onLoss(signal);
      if (signal.aborted) listener();
      else signal.addEventListener('abort', listener, { once: true });
      return () => signal.removeEventListener('abort', listener);
    });
    return { index, slot, marker, lost, detach: () => listeners.forEach((undo) => undo()) };
  }

  /**
   * Refuses (ERR_DLOCK_INVALID_OPTION) when a semaphore with another max holds a slot: slot
   * `max` held, or a slot other than `own` held without this max's marker and still so, by the
   * same session, after the further looks.
   */
  async #checkPeers(own: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const keys = [
      ...this.#slots.map((slot) => slot.actualKey),
      ...this.#markers.map((marker) => marker.actualKey),
      this.#beyond,
    ];
    const look = async () => {
      const ids = await holderIdsOf(this.#target, keys);
      if (ids[2 * this.max] !== null) throw this.#otherMax(`slot ${this.max} is held`);
      return ids;
    };
    const first = await look();
    const unmarked = (ids: (number | null)[], i: number) =>
      i !== own && ids[i] !== null && ids[this.max + i] === null;
    let suspects = this.#slots.map((_, i) => i).filter((i) => unmarked(first, i));
    for (const pause of LOOK_AGAIN_MS) {
      if (suspects.length === 0) return;
      await sleep(pause, undefined, signal ? { signal } : {});
      const again = await look();
      // A slot that changed hands, or gained its marker, was a holder between its two grants.
      suspects = suspects.filter((i) => unmarked(again, i) && again[i] === first[i]);
    }
    const [stranger] = suspects;
    if (stranger !== undefined) {
      throw this.#otherMax(
        `slot ${stranger} is held by session ${first[stranger]} without the marker of max ${this.max}`,
      );
    }
  }

  #otherMax(evidence: string): InvalidOptionError {
    return new InvalidOptionError(
      `The semaphore on ${String(this.key)} is used with another max elsewhere (${evidence}), ` +
        `so no limit would hold: give every semaphore on a key the same max (${this.max} here).`,
    );
  }

  /**
   * Waits on every slot at once; keeps the first granted and gives back any other. Resolves the
   * slot's index, or undefined when the wait timed out.
   */
  async #waitForAny(options: AcquireOptions, closing: AbortSignal): Promise<number | undefined> {
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
    if (winner) return this.#slots.indexOf(winner);
    if (failure !== undefined) throw failure;
    return undefined;
  }

  /** Gives the slot back. Rejects with `ERR_DLOCK_NOT_HELD` when no slot is held. */
  async release(): Promise<void> {
    const held = this.#held;
    if (!held)
      throw new LockNotHeldError('This semaphore object holds no slot: nothing to release.');
    this.#held = undefined;
    held.detach();
    if (held.lost.signal.aborted) {
      await Promise.all([held.slot.close(), held.marker.close()]);
      throw held.lost.signal.reason;
    }
    // The slot first: a slot is never seen held without its marker while it is given back (the
    // next holder of the slot waits a round trip for the marker instead).
    let failure: unknown;
    await held.slot.release().catch((err: unknown) => {
      failure = err;
    });
    await held.marker.release().catch((err: unknown) => {
      failure ??= err;
    });
    if (failure !== undefined) throw failure;
  }

  /** Gives back the slot if one is held and cancels an acquire in progress; never rejects. */
  async close(): Promise<void> {
    const acquiring = this.#acquiring;
    if (acquiring) {
      acquiring.stop.abort(new LockNotHeldError('The semaphore was closed while acquiring.'));
      await acquiring.done.catch(() => undefined);
    }
    this.#held?.detach();
    this.#held = undefined;
    await Promise.all([...this.#slots, ...this.#markers].map((lock) => lock.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
