import { databaseError, LockDeadlockError } from '../errors.js';
import type { Row } from '../drivers/types.js';
import { ensureInt64, hashToInt64, isBytes, utf8, type LockKey } from '../keys.js';
import { errorCode, type Dialect, type LockMode, type Wait } from './dialect.js';

const LOCK_TIMEOUT = '55P03';
const QUERY_CANCELED = '57014';
const DEADLOCK = '40P01';
const SAVEPOINT = 'knex_dlock_wait';

/** PostgreSQL's key: a string or bytes hash to int64 (BLAKE2b-64, little-endian), integers pass. */
export function postgresKey(key: LockKey): bigint {
  if (typeof key === 'string') return hashToInt64(utf8(key));
  if (isBytes(key)) return hashToInt64(key);
  if (typeof key === 'number' || typeof key === 'bigint') return ensureInt64(key);
  return ensureInt64(key satisfies never);
}

function functionName(mode: LockMode, attempt: 'try' | 'wait' | 'unlock'): string {
  const level = mode.xact ? '_xact' : '';
  const shared = mode.shared ? '_shared' : '';
  if (attempt === 'unlock') return `pg_advisory_unlock${shared}`;
  return `pg${attempt === 'try' ? '_try' : ''}_advisory${level}_lock${shared}`;
}

/** A validated int64 as SQL text; only ever a bigint's decimal digits, so it cannot inject. */
function int8Literal(key: bigint): string {
  return `'${ensureInt64(key).toString()}'::int8`;
}

function lockTimeoutSetting(wait: Wait): string {
  // lock_timeout = 0 disables the timeout: that is how "forever" waits.
  return wait.kind === 'timed' ? `${Math.max(1, Math.ceil(wait.ms))}ms` : '0';
}

/**
 * Unlocks a hold that this session may have been granted just as its wait failed: PostgreSQL
 * can report a lock timeout or cancel although it granted the lock. A failed wait means the
 * session did not hold that mode before (a held mode is re-granted at once), so a granted row
 * for this pid and mode can only be that stray grant.
 */
export function undoStrayGrantSql(key: bigint, mode: LockMode): string {
  const high = (BigInt.asUintN(64, key) >> 32n).toString();
  const low = (BigInt.asUintN(64, key) & 0xffffffffn).toString();
  return (
    `SELECT ${functionName(mode, 'unlock')}(${int8Literal(key)}) AS undone FROM pg_locks ` +
    `WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1 ` +
    `AND classid::int8 = ${high} AND objid::int8 = ${low} ` +
    `AND mode = '${mode.shared ? 'ShareLock' : 'ExclusiveLock'}'`
  );
}

/**
 * One round trip for a blocking wait. Outside a transaction the statements form one implicit
 * transaction, so SET LOCAL ends with it; inside the caller's transaction a savepoint keeps a
 * timeout from aborting it, and the caller's settings are put back before the savepoint ends.
 */
function blockingAcquireSql(key: bigint, mode: LockMode, wait: Wait, inTransaction: boolean) {
  const lock = `SELECT ${functionName(mode, 'wait')}(${int8Literal(key)})`;
  const settings = `SET LOCAL lock_timeout = '${lockTimeoutSetting(wait)}'; SET LOCAL statement_timeout = 0`;
  if (!inTransaction) return `${settings}; ${lock}`;
  return [
    `SAVEPOINT ${SAVEPOINT}`,
    `SELECT set_config('knex_dlock.lock_timeout', current_setting('lock_timeout'), true), ` +
      `set_config('knex_dlock.statement_timeout', current_setting('statement_timeout'), true)`,
    settings,
    lock,
    `SELECT set_config('lock_timeout', current_setting('knex_dlock.lock_timeout'), true), ` +
      `set_config('statement_timeout', current_setting('knex_dlock.statement_timeout'), true)`,
    `RELEASE SAVEPOINT ${SAVEPOINT}`,
  ].join('; ');
}

const ROLLBACK_SAVEPOINT = `ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`;

function failedWaitCleanupSql(key: bigint, mode: LockMode, inTransaction: boolean): string {
  const parts: string[] = [];
  // Rolling back to the savepoint also drops a stray transaction-level grant.
  if (inTransaction) parts.push(ROLLBACK_SAVEPOINT);
  if (!mode.xact) parts.push(undoStrayGrantSql(key, mode));
  return parts.join('; ');
}

function firstValue(rows: Row[] | undefined): unknown {
  const row = rows?.[0];
  return row ? Object.values(row)[0] : undefined;
}

/** PostgreSQL advisory locks: session or transaction level, exclusive or shared. */
export const postgresDialect: Dialect<bigint> = {
  name: 'postgres',

  convertKey: postgresKey,

  checkConvertedKey: ensureInt64,

  checkMode() {},

  async acquire(session, key, mode, wait, cancelled) {
    if (wait.kind === 'try') {
      const results = await session.query(`SELECT ${functionName(mode, 'try')}($1) AS acquired`, [
        key,
      ]);
      return firstValue(results[0]) === true;
    }
    const inTransaction = session.inTransaction();
    try {
      await session.query(blockingAcquireSql(key, mode, wait, inTransaction));
      return true;
    } catch (err) {
      const code = errorCode(err);
      const timedOut = code === LOCK_TIMEOUT && wait.kind === 'timed';
      const aborted = code === QUERY_CANCELED && cancelled();
      if (timedOut || aborted) {
        await session.query(failedWaitCleanupSql(key, mode, inTransaction));
        return false;
      }
      // Keep the caller's transaction usable; if even that fails, the first error says more.
      if (inTransaction) await session.query(ROLLBACK_SAVEPOINT).catch(() => undefined);
      if (code === DEADLOCK) {
        throw new LockDeadlockError(
          'PostgreSQL detected a deadlock between lock waits and failed this one: take locks ' +
            'in the same order everywhere, then retry.',
          { cause: err },
        );
      }
      throw databaseError('Acquiring the advisory lock', err);
    }
  },

  async release(session, key, mode) {
    const results = await session.query(`SELECT ${functionName(mode, 'unlock')}($1) AS released`, [
      key,
    ]);
    return firstValue(results[0]) === true;
  },
};
