import { Stop } from '../connections/stop.js';
import type { ConnectionStrategy, Hold, Pooler, ReleaseOutcome } from '../connections/strategy.js';
import type { Dialect, LockMode, Wait } from '../dialects/dialect.js';
import { requestHold } from './grant.js';
import { LossNotice } from './loss.js';
import type { HealthSchedule } from '../loss-detection.js';
import type { LockParts } from './parts.js';
import * as lockMessages from './messages.js';
import { scopeOf, type LockScope } from './scope.js';
import { parseWait, type AcquireOptions } from './options.js';
import { holdStarted, traceLoss, traceRelease } from '../trace.js';
import {
  acquireChannel,
  lostChannel,
  releaseChannel,
  traced,
  type ChannelConnection,
  type LockChannelContext,
} from '../diagnostics.js';
import { publishLoss, traceAcquireOnChannel, traceReleaseOnChannel } from './channels.js';

export type { LockParts } from './parts.js';

type State = 'idle' | 'acquiring' | 'held' | 'releasing' | 'lost';

/**
 * The acquire / release / close contract shared by every database. A lock object holds its lock
 * at most once; several lock objects on the same connection and key stack, and each must be
 * released. Create locks with {@link createLock}.
 */
export abstract class BaseLock<
  Key extends bigint | string = bigint | string,
> implements AsyncDisposable {
  /** The key as the caller gave it. */
  readonly key: unknown;
  /** The key as the database sees it: an int64 (PostgreSQL) or a lock name (MySQL). */
  readonly actualKey: Key;

  readonly #strategy: ConnectionStrategy;
  readonly #dialect: Dialect<Key>;
  readonly #mode: LockMode;
  readonly #scope: LockScope;
  readonly #loss: LossNotice;
  readonly #health: HealthSchedule | undefined;
  readonly #serverBound: number | undefined;
  readonly #serverLocal: boolean;
  readonly #pooler: Pooler | undefined;
  #state: State = 'idle';
  #hold: Hold | undefined;
  #detach: (() => void)[] = [];
  /** The acquire in progress, if any; close() waits for it. */
  #pending: Promise<boolean> | undefined;
  /** Aborts the acquire in progress: the caller's signal, or close(). */
  #stop: Stop | undefined;
  /** Kept here so that a connection shared with other locks need only keep it weakly. */
  #onConnectionLost: ((cause: unknown) => void) | undefined;
  /** When the current hold began, kept only while tracing. */
  #heldSince: number | undefined;
  /** When the current hold was granted (`performance.now()`), for the channels' payloads. */
  #grantedAt = 0;
  readonly #connection: ChannelConnection;

  /** @internal Use {@link createLock}. */
  constructor(parts: LockParts<Key>) {
    this.#strategy = parts.strategy;
    this.#dialect = parts.dialect;
    this.#mode = parts.mode;
    this.#scope = scopeOf(parts.mode);
    this.#loss = new LossNotice(parts.onLost);
    this.#health = parts.health;
    this.#serverBound = parts.serverBound;
    this.#serverLocal = parts.serverLocal ?? false;
    this.#pooler = parts.pooler;
    this.#connection = parts.connection ?? 'caller';
    this.key = parts.key;
    this.actualKey = parts.actualKey;
  }

  /**
   * Whether the database holds this lock for this object now. A transaction-level lock stops
   * being held when its transaction ends; a lost lock is not held.
   */
  get locked(): boolean {
    return this.#current() === 'held';
  }

  /**
   * An AbortSignal for the current hold: it aborts with an `ERR_DLOCK_LOST` error if the lock's
   * connection dies while the lock is held. Undefined while the lock is not held.
   */
  get signal(): AbortSignal | undefined {
    if (this.#current() !== 'held' && this.#state !== 'lost') return undefined;
    return this.#loss.signal;
  }

  /**
   * The fencing token of the current hold, with `fencing: true`: larger than the token of every
   * earlier grant of this key, on any connection or process. Undefined while not held.
   */
  get fencingToken(): bigint | undefined {
    return this.#current() === 'held' ? this.#hold?.token : undefined;
  }

  /** Whether this is a shared lock (PostgreSQL only). */
  get shared(): boolean {
    return this.#mode.shared;
  }

  /** Whether this is a transaction-level lock (PostgreSQL only). */
  get xact(): boolean {
    return this.#mode.xact;
  }

  /** The key as the database sees it (same as {@link BaseLock.actualKey}). */
  getActualKey(): Key {
    return this.actualKey;
  }

  /**
   * Takes the lock. Resolves true once held, false when `timeout` (milliseconds) passed or,
   * with `block: false`, when another session holds it. Rejects with `signal.reason` when the
   * signal aborts; the lock is then not held.
   *
   * @example
   * ```ts
   * if (await lock.acquire({ timeout: 5_000 })) {
   *   try { await work(); } finally { await lock.release(); }
   * }
   * ```
   */
  async acquire(options: AcquireOptions = {}): Promise<boolean> {
    const wait = parseWait(options);
    const signal = options.signal;
    const state = this.#current();
    if (state === 'held' || state === 'acquiring' || state === 'releasing') {
      throw lockMessages.alreadyHeld(state);
    }
    signal?.throwIfAborted();
    this.#state = 'acquiring';
    const stop = new Stop();
    this.#stop = stop;
    const onAbort = () => stop.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const pending = traced(acquireChannel)
      ? traceAcquireOnChannel(
          this.#describe(),
          wait,
          () => this.#acquire(wait, stop),
          () => this.#hold?.token,
        )
      : this.#acquire(wait, stop);
    this.#pending = pending;
    try {
      return await pending;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#pending = undefined;
      this.#stop = undefined;
    }
  }

  async #acquire(wait: Wait, signal: Stop): Promise<boolean> {
    let hold: Hold | undefined;
    try {
      hold = await requestHold(this.#strategy, {
        dialect: this.#dialect,
        key: this.actualKey,
        label: String(this.key),
        mode: this.#mode,
        wait,
        signal,
        health: this.#health,
        serverBound: this.#serverBound,
        serverLocal: this.#serverLocal,
        pooler: this.#pooler,
        owner: this,
      });
    } catch (err) {
      this.#state = 'idle';
      throw err;
    }
    if (!hold) {
      this.#state = 'idle';
      return false;
    }
    this.#held(hold);
    return true;
  }

  #held(hold: Hold): void {
    this.#heldSince = holdStarted();
    this.#grantedAt = performance.now();
    this.#hold = hold;
    this.#state = 'held';
    this.#loss.reset();
    this.#onConnectionLost ??= (cause) => this.#markLost(cause);
    this.#detach = [hold.watch(this.#onConnectionLost)];
    const ending = hold.onTransactionEnding?.(() => this.#onTransactionEnding());
    if (ending) this.#detach.push(ending);
  }

  /**
   * Releases the lock. Rejects with `ERR_DLOCK_NOT_HELD` when this object does not hold it, and
   * with `ERR_DLOCK_LOST` when its connection died. A transaction-level lock cannot be released
   * before its transaction ends: that warns and changes nothing.
   */
  async release(): Promise<void> {
    const state = this.#current();
    if (state === 'lost') {
      throw lockMessages.lostBeforeRelease();
    }
    if (state !== 'held' || !this.#hold) {
      throw lockMessages.releaseNotHeld();
    }
    if (this.#scope.releasable()) await this.#release(this.#hold);
  }

  async #release(hold: Hold): Promise<void> {
    this.#state = 'releasing';
    let outcome: ReleaseOutcome;
    try {
      outcome = await (traced(releaseChannel)
        ? traceReleaseOnChannel(this.#describe(), this.#heldMs(), () => hold.release())
        : hold.release());
    } catch (err) {
      if ((this.#state as State) === 'lost') {
        throw lockMessages.lostWhileReleasing(err);
      }
      // The caller's connection failed the unlock: the lock is still held.
      this.#state = 'held';
      throw err;
    }
    if (outcome === 'closed' && (this.#state as State) === 'lost') {
      throw lockMessages.lostWhileReleasing();
    }
    traceRelease(String(this.key), hold.session, this.#heldSince);
    this.#finish();
    if (outcome === 'not-held') {
      throw lockMessages.notHeldInDatabase();
    }
  }

  /**
   * Releases the lock if it is held; resolves without error when it is not, or when it was lost.
   * An acquire() still waiting is cancelled (it rejects with `ERR_DLOCK_NOT_HELD`, holding
   * nothing). A transaction-level lock stays held until its transaction ends.
   */
  async close(): Promise<void> {
    const state = this.#current();
    if (state === 'acquiring' && this.#pending) {
      const reason = lockMessages.closedWhileAcquiring();
      this.#stop?.abort(reason);
      await this.#pending.catch(() => undefined);
      return this.close();
    }
    if (state === 'lost') {
      this.#state = 'idle';
      return;
    }
    if (state !== 'held' || !this.#hold || !this.#scope.closeReleases) return;
    await this.#release(this.#hold);
  }

  /** Same as {@link BaseLock.close}, so that `await using lock = createLock(...)` works. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The state, after noticing that a transaction-level lock's transaction has ended. */
  #current(): State {
    const hold = this.#hold;
    if (this.#state === 'held' && hold) {
      if (this.#scope.ended(hold)) {
        this.#finish();
        hold.forget();
      } else if (hold.stale?.()) {
        // Stalled past the server's limit: the session may be gone, so the lock counts as lost
        // before anything can report it held or released.
        this.#markLost(lockMessages.stalled());
      }
    }
    return this.#state;
  }

  #finish(): void {
    for (const detach of this.#detach) detach();
    this.#detach = [];
    this.#hold = undefined;
    this.#state = 'idle';
  }

  #markLost(cause: unknown): void {
    if (this.#state !== 'held' && this.#state !== 'releasing') return;
    const hold = this.#hold;
    const error = lockMessages.lost(String(this.key), cause);
    this.#finish();
    this.#state = 'lost';
    traceLoss(String(this.key), hold?.session, cause);
    if (lostChannel.hasSubscribers) publishLoss(this.#describe(), error, this.#heldMs());
    hold?.discard();
    this.#loss.report(error);
  }

  /** The lock as the diagnostics channels describe it. */
  #describe(): LockChannelContext {
    const mode = this.#mode;
    return {
      key: String(this.key),
      actualKey: this.actualKey,
      dialect: this.#dialect.name,
      connection: this.#connection,
      shared: mode.shared,
      xact: mode.xact,
      fencing: mode.fencing === true,
    };
  }

  #heldMs(): number {
    return performance.now() - this.#grantedAt;
  }

  #onTransactionEnding(): void {
    const hold = this.#hold;
    if (this.#state !== 'held' || !hold || !this.#scope.releaseAtTransactionEnd()) return;
    // The unlock is queued now, ahead of the COMMIT or ROLLBACK that is about to be sent.
    this.#release(hold).catch(() => undefined);
  }
}
