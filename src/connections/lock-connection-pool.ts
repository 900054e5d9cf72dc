import type { ConnectionSettings, Driver } from '../drivers/types.js';
import { databaseError } from '../errors.js';
import type { LossDetection } from '../loss-detection.js';
import { traceConnection } from '../trace.js';
import { waitOrGiveUp } from './give-up.js';
import { LockConnection, type LockConnectionOwner, type SharedHold } from './lock-connection.js';
import type { StopSignal } from './stop.js';

/** Settings of a target's lock connections; see `configureLockConnections`. */
export interface LockConnectionSettings {
  readonly max: number;
  readonly idleTimeout: number;
  readonly connection: ConnectionSettings | undefined;
  /** Bounds on silent faults for the locks on them; undefined for the defaults. */
  readonly lossDetection: LossDetection | false | undefined;
}

/** What a connection is reserved for: a try (shares the connection) or a blocking wait (does not). */
export type Purpose = 'try' | 'wait';

/** A request for a connection, queued until one frees up or there is room to open one. */
export interface ConnectionRequest {
  /** Resolves the reserved connection; rejects if opening one failed. */
  readonly connection: Promise<LockConnection>;
  /** Leaves the queue; a connection already handed over is given back when it arrives. */
  withdraw(): void;
}

interface QueuedRequest {
  readonly purpose: Purpose;
  readonly id: string;
  resolve(connection: LockConnection): void;
  reject(err: unknown): void;
}

/** Timers take at most 2^31 - 1 ms; an idle timeout that long or longer never closes. */
const NEVER_MS = 2 ** 31 - 1;

/**
 * The lock connections of one target: which one a try or a wait may use, opening them up to the
 * cap, queueing requests beyond it, closing them when idle, dropping them when they fail. A try
 * may share any connection that no blocking wait occupies and that does not hold its key; a
 * wait needs one that holds nothing. When `max` > 1, one connection is kept from waits, so that
 * tries never queue behind them.
 */
export class LockConnectionPool implements LockConnectionOwner {
  readonly #connections = new Set<LockConnection>();
  readonly #requests: QueuedRequest[] = [];
  #opening = 0;
  /** Connections reserved for or occupied by blocking waits. */
  #waits = 0;

  constructor(
    readonly driver: Driver,
    readonly settings: () => LockConnectionSettings,
    /** Told when a hold leaves its connection, whatever the reason. */
    readonly removed: (hold: SharedHold) => void,
  ) {}

  /** Counts for monitoring and tests. */
  stats() {
    let holds = 0;
    for (const connection of this.#connections) holds += connection.holds.size;
    return {
      connections: this.#connections.size + this.#opening,
      waiting: this.#waits,
      holds,
      requests: this.#requests.length,
    };
  }

  /**
   * A connection reserved for `purpose`: a free one, or a new one while the cap allows, or the
   * first that frees up. Resolves undefined when `deadline` passes first.
   */
  async reserve(
    purpose: Purpose,
    id: string,
    signal: StopSignal,
    deadline: number | undefined,
  ): Promise<LockConnection | undefined> {
    const free = this.reserveFree(purpose, id);
    if (free) return free;
    const pending = this.canOpen(purpose)
      ? this.open(purpose)
      : this.request(purpose, id).connection;
    return waitOrGiveUp(pending, deadline, signal, (late) => this.unreserve(late, purpose));
  }

  /** A connection that can serve `purpose` now, reserved for it; undefined if none can. */
  reserveFree(purpose: Purpose, id: string): LockConnection | undefined {
    let chosen: LockConnection | undefined;
    if (purpose === 'try') {
      // A connection gathering a batch of tries, which this one joins at no cost; else the
      // least busy connection; among equals the one holding most, so that others empty.
      for (const c of this.#connections) {
        if (c.closed || c.waiting || c.holdsKey(id)) continue;
        if (c.batches.active) {
          chosen = c;
          break;
        }
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

  /** Whether no statement runs or is reserved on any lock connection. */
  idle(): boolean {
    for (const c of this.#connections) if (c.running > 0) return false;
    return this.#opening === 0;
  }

  /** Whether a blocking wait could have a connection at once. */
  freeForWait(): boolean {
    if (this.#waits >= this.#waitCap()) return false;
    for (const c of this.#connections) if (!c.closed && c.empty) return true;
    return false;
  }

  unreserve(connection: LockConnection, purpose: Purpose): void {
    if (purpose === 'wait' && connection.waiting) {
      connection.waiting = false;
      this.#waits -= 1;
    }
    connection.end();
  }

  canOpen(purpose: Purpose): boolean {
    if (this.#connections.size + this.#opening >= this.settings().max) return false;
    // Tries share connections: one being opened will serve them all.
    if (purpose === 'try') return this.#opening === 0;
    return this.#waits < this.#waitCap();
  }

  /** Opens a connection and reserves it for `purpose` as soon as it is there. */
  async open(purpose: Purpose): Promise<LockConnection> {
    this.#opening += 1;
    if (purpose === 'wait') this.#waits += 1;
    let connection: LockConnection;
    try {
      const open = this.driver.open!;
      connection = new LockConnection(await open(this.settings().connection), this);
    } catch (err) {
      if (purpose === 'wait') this.#waits -= 1;
      throw databaseError('Opening a lock connection', err);
    } finally {
      this.#opening -= 1;
      // A slot freed up, or a failure may be someone else's success: serve the next request.
      queueMicrotask(() => this.#serve());
    }
    this.#connections.add(connection);
    traceConnection('opened', connection.session);
    connection.begin();
    if (purpose === 'wait') connection.waiting = true;
    return connection;
  }

  /** Queues for the first connection that can serve `purpose`. */
  request(purpose: Purpose, id: string): ConnectionRequest {
    let queued: QueuedRequest | undefined;
    const connection = new Promise<LockConnection>((resolve, reject) => {
      queued = { purpose, id, resolve, reject };
      this.#requests.push(queued);
    });
    return {
      connection,
      withdraw: () => {
        const index = this.#requests.indexOf(queued!);
        if (index >= 0) this.#requests.splice(index, 1);
        else
          connection.then(
            (late) => this.unreserve(late, purpose),
            () => undefined,
          );
      },
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
    const { idleTimeout } = this.settings();
    if (!connection.empty || connection.idleTimer || idleTimeout >= NEVER_MS) return;
    connection.idleTimer = setTimeout(() => {
      if (connection.empty && !connection.closed) void this.#drop(connection);
    }, idleTimeout);
    connection.idleTimer.unref();
  }

  failed(connection: LockConnection, cause: unknown): void {
    void this.#drop(connection, cause);
  }

  #markReserved(connection: LockConnection, purpose: Purpose): void {
    connection.begin();
    if (purpose === 'wait') {
      connection.waiting = true;
      this.#waits += 1;
    }
  }

  #waitCap(): number {
    const { max } = this.settings();
    return max > 1 ? max - 1 : 1;
  }

  /** Hands freed connections (or the room to open one) to the requests queued for them. */
  #serve(): void {
    for (let i = 0; i < this.#requests.length;) {
      const request = this.#requests[i]!;
      const free = this.reserveFree(request.purpose, request.id);
      if (free) {
        this.#requests.splice(i, 1);
        request.resolve(free);
      } else if (this.canOpen(request.purpose)) {
        this.#requests.splice(i, 1);
        this.open(request.purpose).then(request.resolve, request.reject);
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
    traceConnection('closed', connection.session, cause);
    await (cause === undefined ? connection.lease.release() : connection.lease.destroy());
  }
}
