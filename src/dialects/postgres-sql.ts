/**
 * The SQL of PostgreSQL advisory locks. Keys reach SQL text only as validated int64 literals;
 * everything else here is fixed text.
 */
import { ensureInt64 } from '../keys.js';
import type { LockMode, Wait } from './dialect.js';

const SAVEPOINT = 'knex_dlock_wait';
const WAIT_FUNCTION = 'pg_temp.knex_dlock_wait';

export function functionName(mode: LockMode, attempt: 'try' | 'wait' | 'unlock'): string {
  const level = mode.xact ? '_xact' : '';
  const shared = mode.shared ? '_shared' : '';
  if (attempt === 'unlock') return `pg_advisory_unlock${shared}`;
  return `pg${attempt === 'try' ? '_try' : ''}_advisory${level}_lock${shared}`;
}

/** A validated int64 as SQL text; only ever a bigint's decimal digits, so it cannot inject. */
function int8Literal(key: bigint): string {
  return `'${ensureInt64(key).toString()}'::int8`;
}

function lockTimeoutMs(wait: Wait): number {
  // lock_timeout = 0 disables the timeout: that is how "forever" waits.
  return wait.kind === 'timed' ? Math.max(1, Math.ceil(wait.ms)) : 0;
}

/**
 * The rows of this session's own granted hold of `key` in one mode (`key` and `shared` are SQL
 * expressions). An int8 key shows in pg_locks as classid = high 32 bits, objid = low 32 bits.
 */
function ownGrantFilter(key: string, shared: string): string {
  return (
    `locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1 ` +
    `AND classid::int8 = ((${key}) >> 32) & 4294967295 AND objid::int8 = (${key}) & 4294967295 ` +
    `AND mode = CASE WHEN ${shared} THEN 'ShareLock' ELSE 'ExclusiveLock' END`
  );
}

/**
 * Unlocks a hold that this session may have been granted just as its wait failed: PostgreSQL
 * can report a lock timeout or cancel although it granted the lock. A failed wait means the
 * session did not hold that mode before (a held mode is re-granted at once), so a granted row
 * for this pid and mode can only be that stray grant.
 */
export function undoStrayGrantSql(key: bigint, mode: LockMode): string {
  const literal = int8Literal(key);
  return (
    `SELECT ${functionName(mode, 'unlock')}(${literal}) AS undone FROM pg_locks ` +
    `WHERE ${ownGrantFilter(literal, String(mode.shared))}`
  );
}

/**
 * A session-level wait in one statement that cannot fail on a timeout, a cancel or a deadlock:
 * it answers 'acquired', 'timeout', 'cancelled' or 'deadlock', and undoes a grant that raced a
 * timeout or cancel. Living in pg_temp, it is private to the session and gone with it;
 * PL/pgSQL compiles it once per session.
 */
const CREATE_WAIT_FUNCTION = `CREATE OR REPLACE FUNCTION ${WAIT_FUNCTION}(key int8, shared bool)
RETURNS text LANGUAGE plpgsql AS $knex_dlock$
BEGIN
  -- Uncontended, a try is enough, and skips the subtransaction that the handler below costs.
  -- A try queues behind waiting requests as a wait does, so it does not jump the queue.
  IF (CASE WHEN shared THEN pg_try_advisory_lock_shared(key) ELSE pg_try_advisory_lock(key) END) THEN
    RETURN 'acquired';
  END IF;
  BEGIN
    IF shared THEN PERFORM pg_advisory_lock_shared(key); ELSE PERFORM pg_advisory_lock(key); END IF;
    RETURN 'acquired';
  EXCEPTION
    WHEN lock_not_available THEN
      PERFORM CASE WHEN shared THEN pg_advisory_unlock_shared(key) ELSE pg_advisory_unlock(key) END
        FROM pg_locks WHERE ${ownGrantFilter('key', 'shared')};
      RETURN 'timeout';
    WHEN query_canceled THEN
      PERFORM CASE WHEN shared THEN pg_advisory_unlock_shared(key) ELSE pg_advisory_unlock(key) END
        FROM pg_locks WHERE ${ownGrantFilter('key', 'shared')};
      RETURN 'cancelled';
    WHEN deadlock_detected THEN
      RETURN 'deadlock';
  END;
END
$knex_dlock$`;

/**
 * A session-level blocking wait outside a transaction, in one round trip whatever its outcome:
 * the statements form one implicit transaction, so local settings end with it. `create` (re)defines
 * the wait function first, for a session that has not got it yet.
 */
export function waitFunctionCallSql(key: bigint, mode: LockMode, wait: Wait, create: boolean) {
  const call =
    `${setWaitTimeouts(wait)}; ` +
    `SELECT ${WAIT_FUNCTION}(${int8Literal(key)}, ${mode.shared}) AS outcome`;
  return create ? `${CREATE_WAIT_FUNCTION}; ${call}` : call;
}

/** Both settings in one statement (cheaper than two SETs); `true` makes them transaction-local. */
function setWaitTimeouts(wait: Wait): string {
  return (
    `SELECT set_config('lock_timeout', '${lockTimeoutMs(wait)}ms', true), ` +
    `set_config('statement_timeout', '0', true)`
  );
}

/**
 * A blocking wait in plain SQL, in one round trip when it succeeds. Outside a transaction the
 * statements form one implicit transaction, so local settings end with it; inside the caller's
 * transaction a savepoint keeps a failed wait from aborting it, and the caller's settings are
 * put back before the savepoint ends.
 */
export function plainWaitSql(key: bigint, mode: LockMode, wait: Wait, inTransaction: boolean) {
  const lock = `SELECT ${functionName(mode, 'wait')}(${int8Literal(key)})`;
  const settings = setWaitTimeouts(wait);
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

export const ROLLBACK_SAVEPOINT = `ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`;

/** After a plain wait failed: leave the savepoint, and undo a grant that raced the failure. */
export function failedWaitCleanupSql(key: bigint, mode: LockMode, inTransaction: boolean): string {
  const parts: string[] = [];
  // Rolling back to the savepoint also drops a stray transaction-level grant.
  if (inTransaction) parts.push(ROLLBACK_SAVEPOINT);
  if (!mode.xact) parts.push(undoStrayGrantSql(key, mode));
  return parts.join('; ');
}
