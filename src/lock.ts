import type { Dialect, LockMode, Wait } from './dialects/dialect.js';
import { borrowConnection } from './borrow.js';
import type { ConnectionLease, Driver } from './drivers/types.js';
import { startKeepalive } from './keepalive.js';
import {
  databaseError,
  DlockError,
  InvalidOptionError,
  LockAlreadyHeldError,
  LockDeadlockError,
  LockLostError,
  LockNotHeldError,
} from './errors.js';
import { parseWait, type AcquireOptions } from './options.js';

type State = 'idle' | 'acquiring' | 'held' | 'releasing' | 'lost';

/** What is left of a timed wait once a connection was borrowed; nothing left means one try. */
function remainingWait(wait: Wait, deadline: number | undefined): Wait {
  if (wait.kind !== 'timed' || deadline === undefined) return wait;
  const ms = deadline - performance.now();
  return ms >= 1 ? { kind: 'timed', ms } : { kind: 'try' };
}

/** What a lock is built from; `createLock` makes it from the user's target and options. */
export interface LockParts<Key> {
  readonly driver: Driver;
  readonly dialect: Dialect<Key>;
  readonly key: unknown;
  readonly actualKey: Key;
  readonly mode: LockMode;
  readonly onLost?: ((error: LockLostError) => void) | undefined;
  /** Milliseconds between keepalive checks while held; undefined for none. */
  readonly keepalive?: number | undefined;
}

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

  readonly #driver: Driver;
  readonly #dialect: Dialect<Key>;
  readonly #mode: LockMode;
  readonly #onLost: ((error: LockLostError) => void) | undefined;
  readonly #keepalive: number | undefined;
  #state: State = 'idle';
  #lease: ConnectionLease | undefined;
  #detach: (() => void)[] = [];
  #lost: AbortController | undefined;
  /** The acquire in progress, if any; close() waits for it. */
  #pending: Promise<boolean> | undefined;
  /** Ends the acquire in progress early (the phase it is in sets it). */
  #interrupt: ((reason: unknown) => void) | undefined;
  /** Why close() wants the acquire in progress to end, once it asked. */
  #closing: unknown;

  /** @internal Use {@link createLock}. */
  protected constructor(parts: LockParts<Key>) {
    this.#driver = parts.driver;
    this.#dialect = parts.dialect;
    this.#mode = parts.mode;
    this.#onLost = parts.onLost;
    this.#keepalive = parts.keepalive;
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
    // Made on first use: most holds never look at their signal.
    this.#lost ??= new AbortController();
    return this.#lost.signal;
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
      throw new LockAlreadyHeldError(
        `acquire() was called on a lock that is already ${state === 'held' ? 'held' : state}: ` +
          'release it first, or create another lock object to stack on the same key.',
      );
    }
    signal?.throwIfAborted();
    this.#state = 'acquiring';
    const pending = this.#acquire(wait, signal);
    this.#pending = pending;
    try {
      return await pending;
    } finally {
      this.#pending = undefined;
      this.#interrupt = undefined;
      this.#closing = undefined;
    }
  }

  async #acquire(wait: Wait, signal?: AbortSignal): Promise<boolean> {
    const deadline = wait.kind === 'timed' ? performance.now() + wait.ms : undefined;
    let lease: ConnectionLease | undefined;
    try {
      lease = await borrowConnection(this.#driver, deadline, signal, (interrupt) => {
        this.#interrupt = interrupt;
      });
    } catch (err) {
      this.#state = 'idle';
      throw err instanceof DlockError || err === signal?.reason
        ? err
        : databaseError('Getting a connection', err);
    }
    if (!lease) {
      this.#state = 'idle';
      return false;
    }
    try {
      return await this.#acquireOn(lease, remainingWait(wait, deadline), signal);
    } catch (err) {
      this.#state = 'idle';
      throw err;
    }
  }

  async #acquireOn(lease: ConnectionLease, wait: Wait, signal?: AbortSignal): Promise<boolean> {
    if (this.#mode.xact && !lease.session.inTransaction()) {
      await lease.release();
      throw new InvalidOptionError(
        `xact: true needs a transaction, but ${this.#driver.description} is not in one: ` +
          'pass a knex transaction (or a connection inside BEGIN ... COMMIT), or drop xact.',
      );
    }
    if (signal?.aborted || this.#closing !== undefined) {
      await lease.release();
      throw signal?.aborted ? signal.reason : this.#closing;
    }
    let cancelRequested = false;
    let cancelReason: unknown;
    let cancelling: Promise<void> | undefined;
    const cancel = (reason: unknown) => {
      if (cancelRequested) return;
      cancelRequested = true;
      cancelReason = reason;
      // A try returns at once by itself. Errors are ignored: if the cancel fails, the wait
      // simply ends on its own terms.
      if (wait.kind !== 'try') cancelling = lease.session.cancel().catch(() => undefined);
    };
    const onAbort = () => cancel(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#interrupt = cancel;
    let acquired: boolean;
    try {
      acquired = await this.#dialect.acquire(
        lease.session,
        this.actualKey,
        this.#mode,
        wait,
        () => cancelRequested,
      );
    } catch (err) {
      await cancelling;
      // A deadlock victim holds nothing; after any other failure the state is unknown.
      if (err instanceof LockDeadlockError) await lease.release();
      else await lease.destroy();
      if (cancelRequested) throw cancelReason;
      throw err instanceof DlockError ? err : databaseError('Acquiring the lock', err);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    // The cancel must land before anything else runs on this connection.
    await cancelling;
    if (cancelRequested) {
      if (acquired) await this.#unlockOrDestroy(lease);
      else await lease.release();
      throw cancelReason;
    }
    if (!acquired) {
      await lease.release();
      this.#state = 'idle';
      return false;
    }
    this.#hold(lease);
    return true;
  }

  #hold(lease: ConnectionLease): void {
    this.#lease = lease;
    this.#state = 'held';
    this.#lost = undefined;
    this.#detach = [lease.watch((cause) => this.#markLost(cause))];
    const ending = lease.onTransactionEnding?.(() => this.#onTransactionEnding());
    if (ending) this.#detach.push(ending);
    if (this.#keepalive !== undefined) {
      const every = this.#keepalive;
      this.#detach.push(startKeepalive(lease.session, every, (cause) => this.#markLost(cause)));
    }
  }

  /**
   * Releases the lock. Rejects with `ERR_DLOCK_NOT_HELD` when this object does not hold it, and
   * with `ERR_DLOCK_LOST` when its connection died. A transaction-level lock cannot be released
   * before its transaction ends: that warns and changes nothing.
   */
  async release(): Promise<void> {
    const state = this.#current();
    if (state === 'lost') {
      throw new LockLostError(
        'The lock was lost when its connection died, so there is nothing to release: ' +
          'check lock.signal while holding a lock, and acquire it again if needed.',
      );
    }
    if (state !== 'held' || !this.#lease) {
      throw new LockNotHeldError(
        'release() was called on a lock that is not held: acquire it first, or use close(), ' +
          'which does nothing when the lock is not held.',
      );
    }
    if (this.#mode.xact) {
      process.emitWarning(
        'A transaction-level lock is held until its transaction ends; release() changed nothing.',
        { code: 'DLOCK_XACT_RELEASE' },
      );
      return;
    }
    await this.#release(this.#lease);
  }

  async #release(lease: ConnectionLease): Promise<void> {
    this.#state = 'releasing';
    let released: boolean;
    try {
      released = await this.#dialect.release(lease.session, this.actualKey, this.#mode);
    } catch (err) {
      if ((this.#state as State) === 'lost') {
        throw new LockLostError('The lock was lost while it was being released.', { cause: err });
      }
      // A pooled connection is destroyed, which frees the lock; a caller's stays held.
      if (await lease.destroy()) {
        this.#finish();
        return;
      }
      this.#state = 'held';
      throw databaseError('Releasing the lock', err);
    }
    this.#finish();
    await lease.release();
    if (!released) {
      throw new LockNotHeldError(
        'The database did not hold this lock any more (something else released it, e.g. ' +
          'pg_advisory_unlock_all() or RELEASE_ALL_LOCKS() on the same connection).',
      );
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
      const reason = new LockNotHeldError(
        'close() was called while acquire() was waiting, so the lock was not taken.',
      );
      this.#closing = reason;
      this.#interrupt?.(reason);
      await this.#pending.catch(() => undefined);
      return this.close();
    }
    if (state === 'lost') {
      this.#state = 'idle';
      return;
    }
    if (state !== 'held' || !this.#lease || this.#mode.xact) return;
    await this.#release(this.#lease);
  }

  /** Same as {@link BaseLock.close}, so that `await using lock = createLock(...)` works. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #unlockOrDestroy(lease: ConnectionLease): Promise<void> {
    try {
      await this.#dialect.release(lease.session, this.actualKey, this.#mode);
    } catch {
      await lease.destroy();
      return;
    }
    await lease.release();
  }

  /** The state, after noticing that a transaction-level lock's transaction has ended. */
  #current(): State {
    if (this.#state === 'held' && this.#mode.xact && !this.#lease?.session.inTransaction()) {
      const lease = this.#lease;
      this.#finish();
      void lease?.release();
    }
    return this.#state;
  }

  #finish(): void {
    for (const detach of this.#detach) detach();
    this.#detach = [];
    this.#lease = undefined;
    this.#state = 'idle';
  }

  #markLost(cause: unknown): void {
    if (this.#state !== 'held' && this.#state !== 'releasing') return;
    const lease = this.#lease;
    const error = new LockLostError(
      `The lock on ${String(this.key)} was lost: its connection ended or failed. ` +
        'Stop the work it guards; acquire the lock again to continue.',
      { cause },
    );
    this.#finish();
    this.#state = 'lost';
    void lease?.destroy();
    this.#lost ??= new AbortController();
    this.#lost.abort(error);
    this.#onLost?.(error);
  }

  #onTransactionEnding(): void {
    const lease = this.#lease;
    if (this.#state !== 'held' || this.#mode.xact || !lease) return;
    process.emitWarning(
      'A session-level lock was still held when its transaction ended; it was released so ' +
        'that the connection goes back to the pool clean. Release locks before the transaction ends.',
      { code: 'DLOCK_RELEASED_AT_TRANSACTION_END' },
    );
    // The unlock is queued now, ahead of the COMMIT or ROLLBACK that is about to be sent.
    this.#release(lease).catch(() => undefined);
  }
}
