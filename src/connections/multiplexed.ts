import type { Wait } from '../dialects/dialect.js';
import type { Driver } from '../drivers/types.js';
import { acquireOnSession } from './acquire-on-session.js';
import { Counts } from './counts.js';
import { waitOrGiveUp } from './give-up.js';
import { KeyQueues } from './key-queues.js';
import { LockConnection, SharedHold } from './lock-connection.js';
import {
  LockConnectionPool,
  type LockConnectionSettings,
  type Purpose,
} from './lock-connection-pool.js';
import {
  deadlineOf,
  heldLockOf,
  remainingWait,
  type ConnectionStrategy,
  type Hold,
  type LockRequest,
} from './strategy.js';

export type { LockConnectionSettings };

const TRY: Wait = { kind: 'try' };
/**
 * How often a wait that found every lock connection holding locks, with no room for another,
 * tries its key on a shared connection while it queues for one that holds nothing.
 */
const OVERFLOW_RETRY_MS = 250;
const RETRY = Symbol('retry');

/**
 * Locks of one target on a few connections of the library's own (see {@link LockConnectionPool}
 * for which connection serves what). A blocking acquire waits at once when a connection that
 * holds nothing is free and it has no company, and tries first on a shared one otherwise.
 * Waiters for one key queue in memory and only the first waits in the database (see
 * {@link KeyQueues}). Two lock objects of this process never stack on one key.
 */
export class MultiplexedConnections implements ConnectionStrategy {
  readonly #pool: LockConnectionPool;
  readonly #queues = new KeyQueues((request, id, deadline) =>
    this.#attempt(request, id, 'wait', deadline),
  );
  /** Holds in this process, by key id: a try must not stack on a hold of another lock object. */
  readonly #localShared = new Counts<string>();
  readonly #localExclusive = new Counts<string>();
  readonly #abandoned = new FinalizationRegistry<SharedHold>((hold) => this.#reclaim(hold));
  /** Tries in flight, by key id: a blocking acquire of the same key queues behind them. */
  readonly #trying = new Counts<string>();

  constructor(
    driver: Driver,
    public settings: LockConnectionSettings,
  ) {
    this.#pool = new LockConnectionPool(
      driver,
      () => this.settings,
      (hold) => this.#removed(hold),
    );
  }

  async acquire<Key>(request: LockRequest<Key>): Promise<Hold | undefined> {
    const id = String(request.key);
    const deadline = deadlineOf(request.wait);
    const blocking = request.wait.kind !== 'try';
    this.#arrived();
    if (!this.#queues.has(id) && !this.#conflicts(id, request.mode.shared)) {
      // A connection that holds nothing can wait at once: one round trip, whatever the outcome.
      // But with company (other statements running, or other acquires in the same tick), a try
      // joins their batch at no cost of its own (most keys are free), where a wait would take a
      // connection for itself.
      const waitAtOnce =
        blocking && this.#pool.freeForWait() && this.#pool.idle() && (await this.#alone());
      // A key that this process is trying already is likely contended, and others of it may
      // have come during that check: a blocking acquire queues behind them.
      const behindOthers =
        this.#trying.has(id) || this.#queues.has(id) || this.#conflicts(id, request.mode.shared);
      if (waitAtOnce || (blocking && behindOthers)) {
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

  /** Acquires made in the current tick of the job queue (see {@link #alone}). */
  #company = 0;
  #tickOpen = false;

  #arrived(): void {
    this.#company += 1;
    if (this.#tickOpen) return;
    this.#tickOpen = true;
    // Two microtasks: past the checks of the acquires made in this tick.
    queueMicrotask(() =>
      queueMicrotask(() => {
        this.#tickOpen = false;
        this.#company = 0;
      }),
    );
  }

  /**
   * Whether no other acquire was made in the same tick: the acquires made together (workers
   * answered by one batch) ask in the same turn of the job queue, which has run once this
   * resolves.
   */
  async #alone(): Promise<boolean> {
    await undefined;
    return this.#company <= 1;
  }

  /** Counts for monitoring and tests. */
  stats() {
    const { connections, waiting, holds, requests } = this.#pool.stats();
    return { connections, waiting, holds, queued: this.#queues.size + requests };
  }

  /** Closes every lock connection; the locks held on them are lost. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  #removed(hold: SharedHold): void {
    this.#abandoned.unregister(hold);
    (hold.lock.mode.shared ? this.#localShared : this.#localExclusive).remove(hold.id);
  }

  async #try<Key>(
    request: LockRequest<Key>,
    id: string,
    deadline: number | undefined,
  ): Promise<Hold | undefined> {
    this.#trying.add(id);
    try {
      return await this.#attempt(request, id, 'try', deadline);
    } finally {
      this.#trying.remove(id);
    }
  }

  #conflicts(id: string, shared: boolean): boolean {
    return this.#localExclusive.has(id) || (!shared && this.#localShared.has(id));
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
        : await this.#pool.reserve('try', id, request.signal, deadline);
    if (reserved === undefined || reserved instanceof SharedHold) return reserved;
    const connection = reserved;
    const wait = purpose === 'try' ? TRY : remainingWait(request.wait, deadline);
    connection.attempting(id);
    const outcome = await acquireOnSession(
      connection.session,
      { ...request, wait },
      true,
      connection.batches,
    );
    connection.attempted(id);
    if (outcome.kind === 'acquired') {
      const hold = this.#grant(connection, id, request, outcome.grant.token);
      this.#pool.unreserve(connection, purpose);
      return hold;
    }
    if (outcome.kind === 'busy' || outcome.clean) this.#pool.unreserve(connection, purpose);
    else this.#pool.failed(connection, outcome.kind === 'failed' ? outcome.error : outcome.reason);
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
    const free = this.#pool.reserveFree('wait', id);
    if (free) return free;
    if (this.#pool.canOpen('wait')) {
      return waitOrGiveUp(this.#pool.open('wait'), deadline, request.signal, (late) =>
        this.#pool.unreserve(late, 'wait'),
      );
    }
    const queued = this.#pool.request('wait', id);
    let taken = false;
    try {
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const retry = new Promise<typeof RETRY>((resolve) => {
          timer = setTimeout(resolve, OVERFLOW_RETRY_MS, RETRY);
        });
        const got = await waitOrGiveUp(
          Promise.race([queued.connection, retry]),
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
      if (!taken) queued.withdraw();
    }
  }

  #grant<Key>(
    connection: LockConnection,
    id: string,
    request: LockRequest<Key>,
    token: bigint | undefined,
  ): SharedHold {
    const hold = new SharedHold(connection, id, heldLockOf(request), token);
    connection.add(hold);
    (request.mode.shared ? this.#localShared : this.#localExclusive).add(id);
    this.#abandoned.register(request.owner, hold, hold);
    return hold;
  }

  /** A lock object was collected while holding: free its key, and say so. */
  #reclaim(hold: SharedHold): void {
    if (!hold.active) return;
    process.emitWarning(
      `A lock on ${hold.lock.label} was garbage-collected while it was held, so knex-dlock released ` +
        'it. Release or close every lock you acquire (withLock and `await using` do it for you).',
      { code: 'DLOCK_ABANDONED' },
    );
    void hold.release().catch(() => undefined);
  }
}
