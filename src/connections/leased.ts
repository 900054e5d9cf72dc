import type { Dialect } from '../dialects/dialect.js';
import type { ConnectionLease } from '../drivers/types.js';
import { databaseError, DlockError, InvalidOptionError, PoolTimeoutError } from '../errors.js';
import { acquireOnSession } from './acquire-on-session.js';
import { waitOrGiveUp } from './give-up.js';
import { HealthCheck } from './keepalive.js';
import { unpin } from './pinned.js';
import { stallLimitOf } from './server-bound.js';
import {
  deadlineOf,
  heldLockOf,
  type HeldLock,
  remainingWait,
  type ConnectionStrategy,
  type Hold,
  type LockRequest,
  type ReleaseOutcome,
} from './strategy.js';

/**
 * One connection per lock, leased for the wait and the hold: the caller's own connection or
 * transaction, a connection borrowed from the application's pool (`connection: 'pool'`), or one
 * opened for the lock and closed after it (`connection: 'dedicated'`). `leasedWhole`: the
 * connection is the lock's alone while lent (not the caller's own, which it uses meanwhile).
 */
export function leasedConnections(
  description: string,
  lease: () => Promise<ConnectionLease>,
  waitsForConnection: boolean,
  leasedWhole: boolean,
): ConnectionStrategy {
  return {
    async acquire<Key>(request: LockRequest<Key>): Promise<Hold | undefined> {
      const deadline = deadlineOf(request.wait);
      const leasing = lease().catch((err: unknown) =>
        Promise.reject(
          err instanceof DlockError ? err : databaseError('Getting a connection', err),
        ),
      );
      const leased = waitsForConnection
        ? await waitOrGiveUp(
            leasing,
            deadline,
            request.signal,
            (late) => void late.release(),
          ).catch((err: unknown) => {
            // The pool gave up lending a connection: a wait with a limit just ends unlocked.
            if (err instanceof PoolTimeoutError && request.wait.kind !== 'forever') return;
            throw err;
          })
        : await leasing;
      if (!leased) return undefined;
      if (request.mode.xact && !leased.session.inTransaction()) {
        await leased.release();
        throw new InvalidOptionError(
          `xact: true needs a transaction, but ${description} is not in one: ` +
            'pass a knex transaction (or a connection inside BEGIN ... COMMIT), or drop xact.',
        );
      }
      const wait = remainingWait(request.wait, deadline);
      const outcome = await acquireOnSession(
        leased.session,
        wait === request.wait ? request : { ...request, wait },
        leasedWhole,
      );
      switch (outcome.kind) {
        case 'acquired':
          return new LeasedHold(leased, request, outcome.grant.token);
        case 'busy':
          await leased.release();
          return undefined;
        case 'aborted':
          await (outcome.clean ? leased.release() : leased.destroy());
          throw outcome.reason;
        case 'failed':
          await (outcome.clean ? leased.release() : leased.destroy());
          throw outcome.error;
      }
    },
  };
}

/** A lock held on a leased connection, which goes back (or is closed) when the lock is released. */
class LeasedHold<Key> implements Hold {
  readonly onTransactionEnding?: (onEnding: () => void) => () => void;
  /** Kept instead of the request, which would keep its signal alive. */
  readonly lock: HeldLock<Key>;
  #health: HealthCheck | undefined;

  constructor(
    readonly lease: ConnectionLease,
    request: LockRequest<Key>,
    readonly token: bigint | undefined,
  ) {
    this.lock = heldLockOf(request);
    const ending = lease.onTransactionEnding;
    if (ending) this.onTransactionEnding = (onEnding) => ending.call(lease, onEnding);
  }

  get session() {
    return this.lease.session;
  }

  async release(): Promise<ReleaseOutcome> {
    const { dialect, key, mode } = this.lock;
    let released: boolean;
    try {
      released = await dialect.release(this.lease.session, key, mode);
      await unpin(this.lease.session);
    } catch (err) {
      // A connection of a pool or of the library's own is closed, which frees the lock; the
      // caller's stays as it is, and so does the lock.
      if (await this.lease.destroy()) return 'closed';
      throw databaseError('Releasing the lock', err);
    }
    await this.lease.release();
    return released ? 'released' : 'not-held';
  }

  forget(): void {
    void this.lease.release();
  }

  discard(): void {
    void this.lease.destroy();
  }

  watch(onLost: (cause: unknown) => void): () => void {
    const unwatch = this.lease.watch(onLost);
    const { health, dialect } = this.lock;
    if (health === undefined) return unwatch;
    const session = this.lease.session;
    const check = new HealthCheck(
      () => dialect.ping(session),
      health,
      stallLimitOf(session, dialect as Dialect<unknown>),
      onLost,
    );
    this.#health = check;
    return () => {
      unwatch();
      check.stop();
      this.#health = undefined;
    };
  }

  stale(): boolean {
    return this.#health?.stale() ?? false;
  }
}
