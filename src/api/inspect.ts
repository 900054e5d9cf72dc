import type { LockTarget } from './create-lock.js';
import type { Dialect } from '../dialects/dialect.js';
import type { LockHolder } from '../dialects/inspection.js';
import { dialectModule } from '../dialects/registry.js';
import { detectTarget } from '../drivers/detect.js';
import { InvalidOptionError } from '../errors.js';
import type { LockKey } from '../keys.js';
import { onOneConnection } from './on-one-connection.js';
import { checkOptionNames } from '../lock/options.js';

export type { LockHolder } from '../dialects/inspection.js';

/** What {@link inspectLock} found. */
export interface LockInspection {
  /** Whether any session holds the lock, in any mode. */
  readonly held: boolean;
  /** Every session holding it; on PostgreSQL several shared holders, or one exclusive. */
  readonly holders: readonly LockHolder[];
  /**
   * Every session waiting for it in the server, longest first on MySQL (PostgreSQL: ungranted
   * pg_locks rows; MySQL / MariaDB: PROCESSLIST sessions in `User lock` whose statement names
   * it). Waiters queued in a process's memory behind its own waiter are not sessions and do not
   * show.
   */
  readonly waiters: readonly LockHolder[];
}

/** Options of {@link inspectLock}. */
export interface InspectLockOptions<K = LockKey> {
  /** The same key conversion the locks use (see `createLock`'s `convert`). */
  convert?: (key: K) => bigint | string;
}

const OPTION_NAMES = new Set(['convert']);

/**
 * Asks the database who holds the lock on `key`, and who waits for it: on PostgreSQL from pg_locks and
 * pg_stat_activity, on MySQL / MariaDB from IS_USED_LOCK and the PROCESSLIST. Takes no lock
 * and waits for none, so it suits health checks and admin pages. `target` is anything
 * `createLock` accepts; a pooled connection is borrowed for one query.
 *
 * @example
 * ```ts
 * const { held, holders } = await inspectLock(knex, 'nightly-report');
 * if (held) console.log(`running in session ${holders[0]?.sessionId}`);
 * ```
 */
export function inspectLock(
  target: LockTarget,
  key: LockKey,
  options?: InspectLockOptions,
): Promise<LockInspection>;
export function inspectLock<K>(
  target: LockTarget,
  key: K,
  options: InspectLockOptions<K> & { convert: (key: K) => bigint | string },
): Promise<LockInspection>;
export async function inspectLock(
  target: LockTarget,
  key: unknown,
  options: { convert?: (key: never) => bigint | string } = {},
): Promise<LockInspection> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('inspectLock options must be an object.');
  }
  checkOptionNames(options, OPTION_NAMES, 'inspectLock');
  const convert = options.convert as ((key: unknown) => unknown) | undefined;
  if (convert !== undefined && typeof convert !== 'function') {
    throw new InvalidOptionError('Option "convert" must be a function.');
  }
  const driver = detectTarget(target);
  // The family's dialect, whatever its keys' type: the key it makes goes back to it alone.
  const dialect = dialectModule(driver.dialect).dialect as Dialect<unknown>;
  const actualKey = convert
    ? dialect.checkConvertedKey(convert(key))
    : dialect.convertKey(key as LockKey);
  const { holders, waiters } = await onOneConnection(driver, 'Inspecting the lock', (session) =>
    dialect.sessions(session, actualKey),
  );
  return { held: holders.length > 0, holders, waiters };
}

/**
 * @internal For each database key (as a lock's `actualKey` gives it), the session id of one
 * holder or null when free, in one statement on one connection of `target`.
 */
export async function holderIdsOf(
  target: LockTarget,
  actualKeys: readonly (bigint | string)[],
): Promise<(number | null)[]> {
  const driver = detectTarget(target);
  const dialect = dialectModule(driver.dialect).dialect as Dialect<unknown>;
  return onOneConnection(driver, 'Inspecting the semaphore', (session) =>
    dialect.holderIds(session, actualKeys),
  );
}
