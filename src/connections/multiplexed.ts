import type { Wait } from '../dialects/dialect.js';
import type { ConnectionSettings, Driver } from '../drivers/types.js';
import { databaseError } from '../errors.js';
import { acquireOnSession } from './acquire-on-session.js';
import { waitOrGiveUp } from './give-up.js';
import type { StopSignal } from './stop.js';
import { KeyQueues } from './key-queues.js';
import { LockConnection, SharedHold, type LockConnectionOwner } from './lock-connection.js';
import {
  deadlineOf,
  remainingWait,
  type ConnectionStrategy,
  type Hold,
  type LockRequest,
} from './strategy.js';

/** Settings of a target's lock connections; see `configureLockConnections`. */
export interface LockConnectionSettings {
  readonly max: number;
  readonly idleTimeout: number;
  readonly connection: ConnectionSettings | undefined;
}

/** What a connection is reserved for: a try (shares the connection) or a blocking wait (does not). */
type Purpose = 'try' | 'wait';

interface ConnectionRequest {
  readonly purpose: Purpose;
  readonly id: string;
  resolve(connection: LockConnection): void;
  reject(err: unknown): void;
}

const TRY: Wait = { kind: 'try' };
/** Timers take at most 2^31 - 1 ms; an idle timeout that long or longer never closes. */
const NEVER_MS = 2 ** 31 - 1;
/**
 * How often a wait that found every lock connection holding locks, with no room for another,
 * tries its key on a shared connection while it queues for one that holds nothing.
 */
const OVERFLOW_RETRY_MS = 250;
const RETRY = Symbol('retry');

/**
 * Locks of one target on a few connections of the library's own. A try runs on any connection
 * that is not occupied by a blocking wait and does not hold the key yet; a blocking wait runs
 * only on a connection that holds nothing, so that no release ever queues behind a wait. A
 * blocking acquire waits at once when such a connection is free, and tries first otherwise. Waiters
 * for one key queue in memory and only the first waits in the database (see {@link KeyQueues}).
 * At most `max` connections are open; one of them is kept from blocking waits when `max` > 1,
 * so that a try never queues behind waits. Further requests queue in memory.
 */
export class MultiplexedConnections implements ConnectionStrategy, LockConnectionOwner {
  readonly #connections = new Set<LockConnection>();
  readonly #requests: ConnectionRequest[] = [];
  readonly #queues = new KeyQueues((request, id, deadline) =>
    this.#attempt(request, id, 'wait', deadline),
  );
  /** Holds in this process, by key id: a try must not stack on a hold of another lock object. */
  readonly #local = new Map<string, { shared: number; exclusive: number }>();
  readonly #abandoned = new FinalizationRegistry<SharedHold>((hold) => this.#reclaim(hold));
  /** Tries in flight, by key id: a blocking acquire of the same key queues behind them. */
  readonly #trying = new Map<string, number>();
  #opening = 0;
  /** Connections reserved for or occupied by blocking waits. */
  #waits = 0;

  constructor(
    readonly driver: Driver,
    public settings: LockConnectionSettings,
  ) {}

  async acquire<Key>(request: LockRequest<Key>): Promise<Hold | undefined> {
    const id = String(request.key);
    const deadline = deadlineOf(request.wait);
    const blocking = request.wait.kind !== 'try';
    if (!this.#queues.has(id) && !this.#conflicts(id, request.mode.shared)) {
      // A connection that holds nothing can wait at once: one round trip, whatever the outcome.
      // A key that this process is trying already is likely contended: queue behind the try.
      if (blocking && (this.#freeForWait() || this.#trying.has(id))) {
        return this.#queues.enqueue(request, id, deadline);
      }
      // Another lock object's try of this key is on its way: if it wins, this one would lose,
      // and if it loses, the key is held elsewhere. (Shared tries may both win: they go on.)
      if (!request.mode.shared && this.#trying.has(id)) return undefined;
      const hold = await this.#try(request, id, deadline);
      if (hold || !blocking) return hold;
    } else if (!blocking) {
      // Held by another lock object of this process, or already waited for here.
      return undefined;
    }
    return this.#queues.enqueue(request, id, deadline);
  }

  /** Counts for monitoring and tests. */
  stats() {
    let holds = 0;
    for (const connection of this.#connections) holds += connection.holds.size;
    return {
      connections: this.#connections.size + this.#opening,
      waiting: this.#waits,
      holds,
      queued: this.#queues.size + this.#requests.length,
    };
  }

  /** Closes every lock connection; the locks held on them are lost. */
  async close(): Promise<void> {
    const cause = new Error('The lock connections were closed.');
    await Promise.all([...this.#connections].map((connection) => this.#drop(connection, cause)));
  }

  changed(connection: LockConnection): void {
    if (connection.closed) return;
    if (this.#requests.length > 0) this.#serve();
    if (!connection.empty || connection.idleTimer) return;
    if (this.settings.idleTimeout >= NEVER_MS) return;
    connection.idleTimer = setTimeout(() => {
      if (connection.empty && !connection.closed) void this.#drop(connection);
    }, this.settings.idleTimeout);
    connection.idleTimer.unref();
  }

  failed(connection: LockConnection, cause: unknown): void {
    void this.#drop(connection, cause);
  }

  removed(hold: SharedHold): void {
    this.#abandoned.unregister(hold);
    const local = this.#local.get(hold.id);
    if (!local) return;
    if (hold.mode.shared) local.shared -= 1;
    else local.exclusive -= 1;
    if (local.shared + local.exclusive === 0) this.#local.delete(hold.id);
  }

  async #try<Key>(
    request: LockRequest<Key>,
    id: string,
    deadline: number | undefined,
  ): Promise<Hold | undefined> {
    this.#trying.set(id, (this.#trying.get(id) ?? 0) + 1);
    try {
      return await this.#attempt(request, id, 'try', deadline);
    } finally {
      const left = this.#trying.get(id)! - 1;
      if (left > 0) this.#trying.set(id, left);
      else this.#trying.delete(id);
    }
  }

  #conflicts(id: string, shared: boolean): boolean {
    const local = this.#local.get(id);
    return local !== undefined && (local.exclusive > 0 || (!shared && local.shared > 0));
  }

  /** One acquire statement on a connection reserved for `purpose`. */
  async #attempt<Key>(
    request: LockRequest<Key>,
    id: string,
    purpose: Purpose,
    deadline: number | undefined,
  ): Promise<Hold | undefined> {
    const reserved =
      purpose === 'wait'
        ? await this.#roomToWait(request, id, deadline)
        : await this.#reserve('try', id, request.signal, deadline);
    if (reserved === undefined || reserved instanceof SharedHold) return reserved;
    const connection = reserved;
    const wait = purpose === 'try' ? TRY : remainingWait(request.wait, deadline);
    connection.attempting(id);
    const outcome = await acquireOnSession(connection.session, { ...request, wait });
    connection.attempted(id);
    if (outcome.kind === 'acquired') {
      const hold = this.#grant(connection, id, request);
      this.#unreserve(connection, purpose);
      return hold;
    }
    if (outcome.kind === 'busy' || outcome.clean) this.#unreserve(connection, purpose);
    else this.failed(connection, outcome.kind === 'failed' ? outcome.error : outcome.reason);
    if (outcome.kind === 'busy') return undefined;
    throw outcome.kind === 'aborted' ? outcome.reason : outcome.error;
  }

  /**
   * A connection that holds nothing, for a blocking wait. When every lock connection holds
   * locks and there is no room for another, the wait queues for one; meanwhile its key may be
   * freed long before a connection is, so it tries the key on a shared connection every
   * {@link OVERFLOW_RETRY_MS} and resolves the hold if a try wins.
   */
  async #roomToWait<Key>(
    request: LockRequest<Key>,
    id: string,
    deadline: number | undefined,
  ): Promise<LockConnection | SharedHold | undefined> {
    const free = this.#reserveFree('wait', id);
    if (free) return free;
    if (this.#canOpen('wait')) {
      return waitOrGiveUp(this.#openFor('wait'), deadline, request.signal, (late) =>
        this.#unreserve(late, 'wait'),
      );
    }
    let entry: ConnectionRequest | undefined;
    const queued = new Promise<LockConnection>((resolve, reject) => {
      entry = { purpose: 'wait', id, resolve, reject };
      this.#requests.push(entry);
    });
    let taken = false;
    try {
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const retry = new Promise<typeof RETRY>((resolve) => {
          timer = setTimeout(resolve, OVERFLOW_RETRY_MS, RETRY);
        });
        const got = await waitOrGiveUp(
          Promise.race([queued, retry]),
          deadline,
          request.signal,
          () => undefined,
        ).finally(() => clearTimeout(timer));
        if (got === undefined) return undefined;
        if (got !== RETRY) {
          taken = true;
          return got;
        }
        const hold = await this.#attempt(request, id, 'try', deadline);
        if (hold) return hold as SharedHold;
      }
    } finally {
      if (!taken) {
        const index = this.#requests.indexOf(entry!);
        // Still queued: leave the queue; already served: give the connection back when it comes.
        if (index >= 0) this.#requests.splice(index, 1);
        else
          void queued.then(
            (late) => this.#unreserve(late, 'wait'),
            () => undefined,
          );
      }
    }
  }

  #grant<Key>(connection: LockConnection, id: string, request: LockRequest<Key>): SharedHold {
    const hold = new SharedHold(connection, id, request);
    connection.add(hold);
    const local = this.#local.get(id) ?? { shared: 0, exclusive: 0 };
    if (request.mode.shared) local.shared += 1;
    else local.exclusive += 1;
    this.#local.set(id, local);
    this.#abandoned.register(request.owner, hold, hold);
    return hold;
  }

  /** A lock object was collected while holding: free its key, and say so. */
  #reclaim(hold: SharedHold): void {
    if (!hold.active) return;
    process.emitWarning(
      `A lock on ${hold.label} was garbage-collected while it was held, so knex-dlock released ` +
        'it. Release or close every lock you acquire (withLock and `await using` do it for you).',
      { code: 'DLOCK_ABANDONED' },
    );
    void hold.release().catch(() => undefined);
  }

  /**
   * A connection reserved for `purpose`: a free one, or a new one while the cap allows, or the
   * first that frees up. Resolves undefined when `deadline` passes first.
   */
  async #reserve(
    purpose: Purpose,
    id: string,
    signal: StopSignal,
    deadline: number | undefined,
  ): Promise<LockConnection | undefined> {
    const free = this.#reserveFree(purpose, id);
    if (free) return free;
    const pending = this.#canOpen(purpose)
      ? this.#openFor(purpose)
      : new Promise<LockConnection>((resolve, reject) =>
          this.#requests.push({ purpose, id, resolve, reject }),
        );
    return waitOrGiveUp(pending, deadline, signal, (late) => this.#unreserve(late, purpose));
  }

  #reserveFree(purpose: Purpose, id: string): LockConnection | undefined {
    let chosen: LockConnection | undefined;
    if (purpose === 'try') {
      // The least busy connection; among equals the one holding most, so that others empty.
      for (const c of this.#connections) {
        if (c.closed || c.waiting || c.holdsKey(id)) continue;
        if (
          !chosen ||
          c.running < chosen.running ||
          (c.running === chosen.running && c.holds.size > chosen.holds.size)
        ) {
          chosen = c;
        }
      }
    } else if (this.#waits < this.#waitCap()) {
      for (const c of this.#connections) {
        if (!c.closed && c.empty) {
          chosen = c;
          break;
        }
      }
    }
    if (chosen) this.#markReserved(chosen, purpose);
    return chosen;
  }

  #freeForWait(): boolean {
    if (this.#waits >= this.#waitCap()) return false;
    for (const c of this.#connections) if (!c.closed && c.empty) return true;
    return false;
  }

  #markReserved(connection: LockConnection, purpose: Purpose): void {
    connection.begin();
    if (purpose === 'wait') {
      connection.waiting = true;
      this.#waits += 1;
    }
  }

  #unreserve(connection: LockConnection, purpose: Purpose): void {
    if (purpose === 'wait' && connection.waiting) {
      connection.waiting = false;
      this.#waits -= 1;
    }
    connection.end();
  }

  #waitCap(): number {
    return this.settings.max > 1 ? this.settings.max - 1 : 1;
  }

  #canOpen(purpose: Purpose): boolean {
    if (this.#connections.size + this.#opening >= this.settings.max) return false;
    // Tries share connections: one being opened will serve them all.
    if (purpose === 'try') return this.#opening === 0;
    return this.#waits < this.#waitCap();
  }

  /** Opens a connection and reserves it for `purpose` as soon as it is there. */
  async #openFor(purpose: Purpose): Promise<LockConnection> {
    this.#opening += 1;
    if (purpose === 'wait') this.#waits += 1;
    let connection: LockConnection;
    try {
      const open = this.driver.open!;
      connection = new LockConnection(await open(this.settings.connection), this);
    } catch (err) {
      if (purpose === 'wait') this.#waits -= 1;
      throw databaseError('Opening a lock connection', err);
    } finally {
      this.#opening -= 1;
      // A slot freed up, or a failure may be someone else's success: serve the next request.
      queueMicrotask(() => this.#serve());
    }
    this.#connections.add(connection);
    connection.begin();
    if (purpose === 'wait') connection.waiting = true;
    return connection;
  }

  /** Hands freed connections (or the room to open one) to the requests queued for them. */
  #serve(): void {
    for (let i = 0; i < this.#requests.length;) {
      const request = this.#requests[i]!;
      const free = this.#reserveFree(request.purpose, request.id);
      if (free) {
        this.#requests.splice(i, 1);
        request.resolve(free);
      } else if (this.#canOpen(request.purpose)) {
        this.#requests.splice(i, 1);
        this.#openFor(request.purpose).then(request.resolve, request.reject);
      } else {
        i += 1;
      }
    }
  }

  /** Closes `connection`; with a `cause`, the holds on it are lost. */
  async #drop(connection: LockConnection, cause?: unknown): Promise<void> {
    if (connection.closed) return;
    connection.close();
    this.#connections.delete(connection);
    for (const hold of [...connection.holds]) hold.lost(cause);
    if (connection.waiting) {
      connection.waiting = false;
      this.#waits -= 1;
    }
    this.#serve();
    await (cause === undefined ? connection.lease.release() : connection.lease.destroy());
  }
}
