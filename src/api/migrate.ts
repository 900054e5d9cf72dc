import type { LockTarget } from './create-lock.js';
import { InvalidOptionError, type LockLostError } from '../errors.js';
import type { LockKey } from '../keys.js';
import type { BaseLock } from '../lock/base-lock.js';
import { checkOptionNames } from '../lock/options.js';
import { withLock } from './with-lock.js';

/**
 * The key that {@link withMigrationLock} and {@link migrateLatest} lock when given none. MySQL
 * named locks are server-wide: applications that share a MySQL server but not a schema can pass
 * a key of their own so that they do not wait for each other's migrations.
 */
export const DEFAULT_MIGRATION_LOCK_KEY = 'knex-dlock:migrations';

/** Options of {@link withMigrationLock}. */
export interface MigrationLockOptions {
  /** The lock key. Default {@link DEFAULT_MIGRATION_LOCK_KEY}. */
  key?: LockKey;
  /**
   * The longest wait for another process's migrations, in milliseconds; past it the call
   * rejects with `ERR_DLOCK_TIMEOUT`. Default: wait as long as they take.
   */
  timeout?: number;
  /** Aborting it cancels the wait for the lock. */
  signal?: AbortSignal;
  /** Called if the lock's connection dies while `fn` runs (see `createLock`'s `onLost`). */
  onLost?: (error: LockLostError) => void;
}

/** Options of {@link migrateLatest}: the lock's, plus knex's migrator configuration. */
export interface MigrateLatestOptions extends MigrationLockOptions {
  /** Passed to `knex.migrate.latest(config)`: directory, tableName, disableTransactions, … */
  config?: object;
  /**
   * Clears knex's own migration lock (`knex migrate:unlock`) once the advisory lock is held.
   * A run that died mid-way can leave knex's lock row set (always with `disableTransactions`,
   * and on MySQL, where DDL commits); while the advisory lock is held no guarded process is
   * migrating, so the row is stale. Turn it off only if some process migrates without the
   * guard. Default `true`.
   */
  freeKnexLock?: boolean;
}

/** The parts of a knex instance that {@link migrateLatest} uses. */
export interface MigratingKnex {
  readonly migrate: {
    latest(config?: object): Promise<unknown>;
    forceFreeMigrationsLock(config?: object): Promise<unknown>;
  };
}

/** What knex's `migrate.latest()` resolves: the batch number and the migrations it ran. */
export type MigrateLatestResult = [batchNo: number, log: string[]];

const LOCK_OPTION_NAMES = ['key', 'timeout', 'signal', 'onLost'];

/**
 * Runs `fn` while holding a session-level lock on a connection of its own (not one from the
 * knex pool, so that `fn` can use every pooled connection), then releases it. Processes that
 * call it at once run `fn` one after another. A process that dies releases the lock with its
 * connection, so nothing is left to unlock by hand. Rejects with `ERR_DLOCK_TIMEOUT` after
 * `timeout` milliseconds, and with `ERR_DLOCK_LOST` if the lock's connection died before `fn`
 * finished (`fn`'s signal aborts at that moment).
 *
 * @example
 * ```ts
 * await withMigrationLock(knex, async () => {
 *   await knex.migrate.latest();
 *   await knex.seed.run();
 * }, { timeout: 5 * 60_000 });
 * ```
 */
export async function withMigrationLock<T>(
  knex: LockTarget,
  fn: (lock: BaseLock, signal: AbortSignal) => Promise<T> | T,
  options: MigrationLockOptions = {},
): Promise<T> {
  checkObject(options, 'withMigrationLock');
  checkOptionNames(options, new Set(LOCK_OPTION_NAMES), 'withMigrationLock');
  const { key = DEFAULT_MIGRATION_LOCK_KEY, ...rest } = options;
  return withLock(knex, key, fn, { ...rest, connection: 'dedicated' });
}

/**
 * `knex.migrate.latest(config)` under {@link withMigrationLock}: when several replicas start at
 * once, one runs the migrations while the others wait, then find nothing left to do. Works
 * with `disableTransactions` too. Every process that migrates the database must go through
 * this guard (or `knex-dlock run` with the same key).
 *
 * @example
 * ```ts
 * const [batch, ran] = await migrateLatest(knex, {
 *   config: { directory: './migrations' },
 *   timeout: 10 * 60_000,
 * });
 * ```
 */
export async function migrateLatest(
  knex: LockTarget & MigratingKnex,
  options: MigrateLatestOptions = {},
): Promise<MigrateLatestResult> {
  checkObject(options, 'migrateLatest');
  checkOptionNames(
    options,
    new Set([...LOCK_OPTION_NAMES, 'config', 'freeKnexLock']),
    'migrateLatest',
  );
  const { config, freeKnexLock = true, ...lockOptions } = options;
  if (typeof knex.migrate?.latest !== 'function') {
    throw new InvalidOptionError('migrateLatest needs a knex instance (with knex.migrate).');
  }
  return withMigrationLock(
    knex,
    async () => {
      if (freeKnexLock) await knex.migrate.forceFreeMigrationsLock(config);
      return (await knex.migrate.latest(config)) as MigrateLatestResult;
    },
    lockOptions,
  );
}

function checkObject(options: unknown, where: string): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`${where} options must be an object.`);
  }
}
