import {
  connectionStrategy,
  existingLockConnections as existingLockConnectionsOf,
} from '../connections/registry.js';
import { checkMode, type LockMode } from '../dialects/dialect.js';
import { dialectModule } from '../dialects/registry.js';
import { detectTarget } from '../drivers/detect.js';
import { InvalidOptionError } from '../errors.js';
import type { LockKey } from '../keys.js';
import type { LockParts } from '../lock/base-lock.js';
import { lossPolicy } from './loss-policy.js';
import { checkLockOptions, type LockOptions } from '../lock/options.js';
import { createRegisteredLock, type RegisteredLock } from '../locks/registry.js';

/**
 * What `createLock` accepts as a target: a knex instance or transaction, a pg `Client`,
 * `PoolClient` or `Pool`, or a mysql2 connection or pool (callback or promise API). The type is
 * open so that no driver's types are needed; the target is checked when the lock is created.
 */
export type LockTarget = object;

/**
 * Creates a lock on `key` through `target`, choosing the database and driver by looking at the
 * target. Nothing is sent to the database until `acquire()`; a bad key, option or target
 * throws here.
 *
 * @example
 * ```ts
 * const lock = createLock(knex, 'nightly-report');
 * if (await lock.acquire({ block: false })) {
 *   try { await buildReport(); } finally { await lock.release(); }
 * }
 * ```
 */
export function createLock(target: LockTarget, key: LockKey, options?: LockOptions): RegisteredLock;
export function createLock<K>(
  target: LockTarget,
  key: K,
  options: LockOptions<K> & { convert: (key: K) => bigint | string },
): RegisteredLock;
export function createLock(
  target: LockTarget,
  key: unknown,
  options: Omit<LockOptions, 'convert'> & { convert?: (key: never) => bigint | string } = {},
): RegisteredLock {
  const convert = options.convert as ((key: unknown) => unknown) | undefined;
  checkLockOptions(options);
  const driver = detectTarget(target);
  if (options.connection !== undefined && !driver.pooled) {
    throw new InvalidOptionError(
      `Option "connection" applies to pools and knex instances, not to ${driver.description}: remove it.`,
    );
  }
  const mode: LockMode = {
    shared: options.shared ?? false,
    xact: options.xact ?? false,
    fencing: options.fencing ?? false,
  };
  const family = dialectModule(driver.dialect);
  // A transaction pooler may run the next statement on a server session that never saw one
  // prepared on another (PgBouncer before 1.21).
  const dialect = family.dialectFor(
    options.pooler === 'transaction' ? { ...options, preparedStatements: false } : options,
  );
  checkMode(dialect, mode);
  if (mode.fencing && driver.transaction && !dialect.capabilities.fencingInTransactions) {
    throw new InvalidOptionError(
      `fencing: true cannot take tokens inside a transaction on ${dialect.title}, where a ` +
        `rollback would take the token back: create the lock on the knex instance, not on ` +
        `${driver.description}.`,
    );
  }
  if (mode.xact && driver.pooled) {
    throw new InvalidOptionError(
      `xact: true needs a transaction, but ${driver.description} hands out connections outside ` +
        'any transaction: pass a knex transaction (or a pg client inside BEGIN ... COMMIT).',
    );
  }
  const actualKey = convert
    ? dialect.checkConvertedKey(convert(key))
    : dialect.convertKey(key as LockKey);
  const connection = options.connection ?? 'multiplexed';
  const multiplexed = driver.pooled && connection === 'multiplexed';
  const loss = lossPolicy(
    dialect,
    {
      owned: driver.pooled && connection !== 'pool',
      multiplexed,
      target: driver.pooled ? existingLockConnectionsOf(driver)?.settings.lossDetection : undefined,
    },
    options.lossDetection,
    options.keepalive,
  );
  const parts: LockParts<bigint | string> = {
    strategy: connectionStrategy(driver, options.connection),
    dialect,
    key,
    actualKey,
    mode,
    onLost: options.onLost,
    health: loss.health,
    serverBound: loss.serverBound,
    serverLocal: options.serverLocal,
    pooler: options.pooler,
    connection: driver.pooled ? connection : 'caller',
  };
  return createRegisteredLock(driver.dialect, parts);
}
