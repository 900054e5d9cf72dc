import type { Dialect } from '../dialects/dialect.js';
import type { ConnectionLease, SqlSession } from '../drivers/types.js';
import type { HealthSchedule } from '../loss-detection.js';
import { StatementBatches } from './batches.js';
import { Counts } from './counts.js';
import { HealthCheck } from './keepalive.js';
import { unpin } from './pinned.js';
import { stallLimitOf } from './server-bound.js';
import type { HeldLock, Hold, ReleaseOutcome } from './strategy.js';

/** What a lock connection tells the pool of lock connections it belongs to. */
export interface LockConnectionOwner {
  /** A statement ended on `connection`, or a hold left it: it may be free now. */
  changed(connection: LockConnection): void;
  /** `connection` failed, ended or stopped answering: every hold on it is lost. */
  failed(connection: LockConnection, cause: unknown): void;
  /** `hold` no longer holds its lock, whatever the reason. */
  removed(hold: SharedHold): void;
}

/**
 * One connection of the library's own that many locks share: what it holds, how many
 * statements run on it, whether a blocking wait occupies it. One health check per connection runs
 * while a hold asks for it, at the shortest period any of them asked for.
 */
export class LockConnection {
  readonly holds = new Set<SharedHold>();
  /** Whether a blocking wait runs on it: nothing else may run there until it ends. */
  waiting = false;
  /** Closed or failed: it takes no more work. */
  closed = false;
  /** Since when it is unused, for the idle timeout; undefined while in use. */
  idleTimer: NodeJS.Timeout | undefined;
  #running = 0;
  readonly #keys = new Counts<string>();
  /** Keys an acquire statement runs for right now: a second one must not stack on it. */
  readonly #attempts = new Counts<string>();
  /** How many holds ask for each health check schedule. */
  readonly #schedules = new Counts<HealthSchedule>();
  #health: HealthCheck | undefined;
  /** The dialect of its holds, which pings it. */
  #dialect: Dialect<unknown> | undefined;

  /** Its tries and releases, gathered into one statement when several are queued. */
  readonly batches: StatementBatches;

  constructor(
    readonly lease: ConnectionLease,
    readonly owner: LockConnectionOwner,
  ) {
    lease.watch((cause) => owner.failed(this, cause));
    this.batches = new StatementBatches(lease.session);
  }

  get session(): SqlSession {
    return this.lease.session;
  }

  /** Statements reserved or running on it. */
  get running(): number {
    return this.#running;
  }

  /** Holds nothing, runs nothing, waits for nothing: free for a blocking wait, or to close. */
  get empty(): boolean {
    return this.holds.size === 0 && this.#running === 0 && !this.waiting;
  }

  /** Whether it holds `id`, or an acquire of `id` runs on it. */
  holdsKey(id: string): boolean {
    return this.#keys.has(id) || this.#attempts.has(id);
  }

  attempting(id: string): void {
    this.#attempts.add(id);
  }

  attempted(id: string): void {
    this.#attempts.remove(id);
  }

  /** Reserves the connection for one statement (or one wait). */
  begin(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.#running += 1;
  }

  end(): void {
    this.#running -= 1;
    this.#health?.heard();
    this.owner.changed(this);
  }

  add(hold: SharedHold): void {
    this.holds.add(hold);
    this.#keys.add(hold.id);
    const { health } = hold.lock;
    if (health !== undefined) {
      this.#dialect ??= hold.lock.dialect as Dialect<unknown>;
      this.#schedules.add(health);
      if (!this.#covers(health)) this.#updateHealthCheck();
    }
  }

  remove(hold: SharedHold): void {
    if (!this.holds.delete(hold)) return;
    this.#keys.remove(hold.id);
    const { health } = hold.lock;
    if (health !== undefined) {
      this.#schedules.remove(health);
      if (!this.#schedules.has(health)) this.#updateHealthCheck();
    }
  }

  /** Whether the server may have ended the session while this process was stalled. */
  stale(): boolean {
    return this.#health?.stale() ?? false;
  }

  /** Marks it closed and stops its timers; the owner closes the lease. */
  close(): void {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.#health?.stop();
  }

  /** Whether the running check is at least as strict as `schedule`. */
  #covers(schedule: HealthSchedule): boolean {
    const running = this.#health?.schedule;
    return (
      running !== undefined &&
      running.interval <= schedule.interval &&
      running.deadline <= schedule.deadline
    );
  }

  /** One health check per connection, as strict as the strictest schedule of its holds. */
  #updateHealthCheck(): void {
    let interval = Infinity;
    let deadline = Infinity;
    for (const schedule of this.#schedules.keys()) {
      interval = Math.min(interval, schedule.interval);
      deadline = Math.min(deadline, schedule.deadline);
    }
    const running = this.#health?.schedule;
    if (running?.interval === interval && running.deadline === deadline) return;
    this.#health?.stop();
    this.#health = undefined;
    const dialect = this.#dialect;
    if (interval === Infinity || !dialect || this.closed) return;
    const session = this.session;
    this.#health = new HealthCheck(
      () => dialect.ping(session),
      { interval, deadline },
      stallLimitOf(session, dialect),
      (cause) => this.owner.failed(this, cause),
    );
  }
}

/** A lock held on a shared lock connection. */
export class SharedHold<Key = unknown> implements Hold {
  /** Whether the database still holds it for this hold. */
  active = true;
  /** Weak, so that a lock object dropped while holding can be collected and its hold freed. */
  #onLost: WeakRef<(cause: unknown) => void> | undefined;
  #lostCause: unknown;

  constructor(
    readonly connection: LockConnection,
    readonly id: string,
    readonly lock: HeldLock<Key>,
    readonly token: bigint | undefined,
  ) {}

  get session(): SqlSession {
    return this.connection.session;
  }

  async release(): Promise<ReleaseOutcome> {
    const connection = this.connection;
    if (!this.active) return 'closed';
    connection.begin();
    let released: boolean;
    try {
      const { dialect, key, mode } = this.lock;
      released = await connection.batches.release(dialect, key, mode);
      await unpin(connection.session);
    } catch (err) {
      // The unlock's fate is unknown: closing the connection frees it (and every other hold).
      this.#remove();
      connection.owner.failed(connection, err);
      connection.end();
      return 'closed';
    }
    this.#remove();
    connection.end();
    return released ? 'released' : 'not-held';
  }

  stale(): boolean {
    return this.connection.stale();
  }

  forget(): void {
    this.#remove();
    this.connection.owner.changed(this.connection);
  }

  discard(): void {
    if (this.active) this.connection.owner.failed(this.connection, this.#lostCause);
  }

  watch(onLost: (cause: unknown) => void): () => void {
    if (!this.active) {
      queueMicrotask(() => onLost(this.#lostCause));
      return () => undefined;
    }
    this.#onLost = new WeakRef(onLost);
    return () => (this.#onLost = undefined);
  }

  /** The connection died: the database dropped this lock. */
  lost(cause: unknown): void {
    if (!this.active) return;
    this.#lostCause = cause;
    this.#remove();
    const onLost = this.#onLost?.deref();
    this.#onLost = undefined;
    onLost?.(cause);
  }

  #remove(): void {
    if (!this.active) return;
    this.active = false;
    this.connection.remove(this);
    this.connection.owner.removed(this);
  }
}
