import { lockConnectionsOf } from '../connections/registry.js';
import type { LockTarget } from './create-lock.js';
import { detectTarget } from '../drivers/detect.js';
import type { ConnectionSettings, Driver } from '../drivers/types.js';
import { InvalidOptionError } from '../errors.js';
import { describe } from '../keys.js';
import { checkLossDetection, type LossDetection } from '../loss-detection.js';
import { checkOptionNames } from '../lock/options.js';

/** Options of {@link configureLockConnections}. */
export interface LockConnectionOptions {
  /**
   * The most connections the target's locks keep open at once. Locks share them: any number
   * of held locks fit on one; each blocking wait on a contended key needs one that holds
   * nothing. Beyond the cap, waits queue in memory. Default 8.
   */
  max?: number;
  /** Milliseconds an unused lock connection stays open before it is closed. Default 5 000. */
  idleTimeout?: number;
  /**
   * Where lock connections go when it is not where the application's go: a URL or a driver
   * connection config (pg's, mysql2's). For example the database directly, when the
   * application goes through a transaction-mode PgBouncer, where session locks are unsafe.
   * Default: the target's own settings.
   */
  connection?: ConnectionSettings;
  /**
   * Bounds on silent faults for the locks on these connections and on `'dedicated'` ones (see
   * {@link LossDetection}): the holder learns of a loss within `detect` ms, the server frees
   * the key within `free` ms. `false` turns the health check and the server bound off. Default:
   * `{ detect: 2_500 }` and the database's `free` (PostgreSQL 12 000, MySQL / MariaDB 31 000).
   */
  lossDetection?: LossDetection | false;
}

/** What {@link lockConnectionStats} reports for a target. */
export interface LockConnectionStats {
  /** Lock connections open or being opened. */
  readonly connections: number;
  /** Of those, how many a blocking wait occupies. */
  readonly waiting: number;
  /** Locks held on them. */
  readonly holds: number;
  /** Acquires waiting in memory: behind another waiter for their key, or for a connection. */
  readonly queued: number;
}

const OPTION_NAMES = new Set(['max', 'idleTimeout', 'connection', 'lossDetection']);

function pooledDriver(target: LockTarget, where: string): Driver {
  const driver = detectTarget(target);
  if (!driver.pooled) {
    throw new InvalidOptionError(
      `${where} applies to pools and knex instances, whose locks run on connections of the ` +
        `library's own; ${driver.description} runs its locks on itself.`,
    );
  }
  return driver;
}

/**
 * Sets how a pooled target's (knex instance, pg.Pool, mysql2 pool) locks get their
 * connections. Call it once, before the first lock; later calls apply to connections opened
 * afterwards.
 *
 * @example
 * ```ts
 * // The app goes through PgBouncer (transaction mode); locks go to the database directly.
 * configureLockConnections(knex, { connection: process.env.DIRECT_DATABASE_URL, max: 4 });
 * ```
 */
export function configureLockConnections(target: LockTarget, options: LockConnectionOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(
      `Lock connection options must be an object, got ${describe(options)}.`,
    );
  }
  checkOptionNames(options, OPTION_NAMES, 'configureLockConnections');
  const { max, idleTimeout, connection, lossDetection } = options;
  checkLossDetection(lossDetection);
  if (max !== undefined && !(Number.isInteger(max) && max >= 1)) {
    throw new InvalidOptionError(
      `Option "max" must be an integer of at least 1, got ${describe(max)}.`,
    );
  }
  if (idleTimeout !== undefined && !(typeof idleTimeout === 'number' && idleTimeout >= 0)) {
    throw new InvalidOptionError(
      `Option "idleTimeout" must be a number of milliseconds, 0 or more, got ${describe(idleTimeout)}.`,
    );
  }
  if (
    connection !== undefined &&
    typeof connection !== 'string' &&
    typeof connection !== 'object'
  ) {
    throw new InvalidOptionError(
      `Option "connection" must be a URL or a connection config object, got ${describe(connection)}.`,
    );
  }
  const connections = lockConnectionsOf(pooledDriver(target, 'configureLockConnections'));
  const current = connections.settings;
  connections.settings = {
    max: max ?? current.max,
    idleTimeout: idleTimeout ?? current.idleTimeout,
    connection: connection ?? current.connection,
    lossDetection: lossDetection ?? current.lossDetection,
  };
}

/**
 * Closes a pooled target's lock connections now, instead of after their idle timeout; locks
 * still held on them are lost (their `signal` aborts). Later locks open new ones.
 *
 * @example
 * ```ts
 * await closeLockConnections(knex);
 * await knex.destroy();
 * ```
 */
export function closeLockConnections(target: LockTarget): Promise<void> {
  return lockConnectionsOf(pooledDriver(target, 'closeLockConnections')).close();
}

/** How many lock connections a pooled target has open, and what runs on them. */
export function lockConnectionStats(target: LockTarget): LockConnectionStats {
  return lockConnectionsOf(pooledDriver(target, 'lockConnectionStats')).stats();
}
