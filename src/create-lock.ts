import { mysqlDialect } from './dialects/mysql/dialect.js';
import { postgresDialect } from './dialects/postgres/dialect.js';
import type { Dialect, LockMode } from './dialects/dialect.js';
import { connectionStrategy } from './connections/registry.js';
import { detectTarget } from './drivers/detect.js';
import { InvalidOptionError } from './errors.js';
import type { LockKey } from './keys.js';
import { MysqlLock } from './dialects/mysql/lock.js';
import { checkLockOptions, type LockOptions } from './options.js';
import { PostgresLock } from './dialects/postgres/lock.js';

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
export function createLock(
  target: LockTarget,
  key: LockKey,
  options?: LockOptions,
): PostgresLock | MysqlLock;
export function createLock<K>(
  target: LockTarget,
  key: K,
  options: LockOptions<K> & { convert: (key: K) => bigint | string },
): PostgresLock | MysqlLock;
export function createLock(
  target: LockTarget,
  key: unknown,
  options: Omit<LockOptions, 'convert'> & { convert?: (key: never) => bigint | string } = {},
): PostgresLock | MysqlLock {
  const convert = options.convert as ((key: unknown) => unknown) | undefined;
  checkLockOptions(options);
  const driver = detectTarget(target);
  if (options.connection !== undefined && !driver.pooled) {
    throw new InvalidOptionError(
      `Option "connection" applies to pools and knex instances, not to ${driver.description}: remove it.`,
    );
  }
  const mode: LockMode = { shared: options.shared ?? false, xact: options.xact ?? false };
  const dialect: Dialect<bigint> | Dialect<string> =
    driver.dialect === 'postgres' ? postgresDialect : mysqlDialect;
  dialect.checkMode(mode);
  if (mode.xact && driver.pooled) {
    throw new InvalidOptionError(
      `xact: true needs a transaction, but ${driver.description} hands out connections outside ` +
        'any transaction: pass a knex transaction (or a pg client inside BEGIN ... COMMIT).',
    );
  }
  const strategy = connectionStrategy(driver, options.connection);
  const parts = { strategy, key, mode, onLost: options.onLost, keepalive: options.keepalive };
  if (driver.dialect === 'postgres') {
    const actualKey = convert
      ? postgresDialect.checkConvertedKey(convert(key))
      : postgresDialect.convertKey(key as LockKey);
    return new PostgresLock({
      ...parts,
      actualKey,
      preparedStatements: options.preparedStatements,
    });
  }
  const actualKey = convert
    ? mysqlDialect.checkConvertedKey(convert(key))
    : mysqlDialect.convertKey(key as LockKey);
  return new MysqlLock({ ...parts, actualKey });
}
