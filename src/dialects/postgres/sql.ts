/**
 * The SQL of PostgreSQL advisory locks. The statements of every lock operation are fixed text
 * with the key as a bound parameter, prepared once per connection; only the rarer multi-statement
 * scripts (a wait inside a transaction, a session's first wait) carry keys, as validated int64
 * literals.
 */
import { ensureInt64 } from '../../keys.js';
import type { LockMode, Wait } from '../dialect.js';
import type { Statement } from './statements.js';

const SAVEPOINT = 'knex_dlock_wait';
const WAIT_FUNCTION = 'pg_temp.knex_dlock_wait';

/** The sequence that fencing tokens come from (see fencing.ts). */
export const FENCING_SEQUENCE = 'knex_dlock_fencing';

/**
 * The server's timeline: 1 on a new cluster, and higher after each promotion of a standby (the
 * first 8 hex digits of the current WAL file's name). Readable by any user.
 */
const TIMELINE = `('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8`;

/**
 * A fencing token from the sequence value `next`: the timeline above the sequence's 47 bits.
 * After a failover the promoted standby's sequence may hand out values the old primary already
 * gave (it replayed them late or never), but on a higher timeline, so its tokens are larger
 * than every token of the old primary.
 */
export function tokenOf(next: string): string {
  return `((${TIMELINE} << 47) + ${next})`;
}

/**
 * The next fencing token, or NULL where taking one would fail the statement and, inside a
 * transaction, abort the caller's transaction: no sequence (or no right to use it), or a
 * read-only transaction. The caller then finds out why, with the grant undone.
 */
const NEXT_TOKEN =
  `CASE WHEN current_setting('transaction_read_only')::bool OR NOT coalesce(` +
  `has_sequence_privilege(to_regclass('${FENCING_SEQUENCE}'), 'USAGE'), false) THEN NULL ` +
  `ELSE ${tokenOf(`nextval(to_regclass('${FENCING_SEQUENCE}'))`)} END`;

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

const lockStatements = new Map<string, Statement>();

/**
 * The try / unlock statement of one mode, prepared once per connection: `$1` is the key. A
 * fenced try also takes a token when granted; its subquery runs the try exactly once.
 */
export function lockStatement(mode: LockMode, attempt: 'try' | 'unlock'): Statement {
  const fn = functionName(mode, attempt);
  const fenced = attempt === 'try' && mode.fencing === true;
  const id = fenced ? `fenced_${fn}` : fn;
  let statement = lockStatements.get(id);
  if (!statement) {
    const column = attempt === 'try' ? 'acquired' : 'released';
    const text = fenced
      ? `SELECT g.acquired, CASE WHEN g.acquired THEN ${NEXT_TOKEN} END AS token ` +
        `FROM (SELECT ${fn}($1) AS acquired) g`
      : `SELECT ${fn}($1) AS ${column}`;
    statement = { id, text };
    lockStatements.set(id, statement);
  }
  return statement;
}

/**
 * Unlocks a hold that this session may have been granted just as its wait failed: PostgreSQL
 * can report a lock timeout or cancel although it granted the lock. A failed wait means the
 * session did not hold that mode before (a held mode is re-granted at once), so a granted row
 * for this pid and mode can only be that stray grant. `$1` is the key.
 */
export function undoStrayGrantStatement(mode: LockMode): Statement {
  const fn = functionName(mode, 'unlock');
  return {
    id: `undo_${fn}`,
    text: `SELECT ${fn}($1) AS undone FROM pg_locks WHERE ${ownGrantFilter('$1::int8', String(mode.shared))}`,
  };
}

/** As {@link undoStrayGrantStatement}, as text with the key in it, to follow other statements. */
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
 * timeout or cancel. It sets lock_timeout itself, transaction-local: called as one statement
 * outside a transaction block, the setting ends with the statement. statement_timeout cannot be
 * lifted from inside (the server armed it when the statement began), so with one in force the
 * function answers 'statement-timeout' instead of waiting, and the caller lifts it first.
 * Living in pg_temp, it is private to the session and gone with it; PL/pgSQL compiles it once
 * per session.
 */
const CREATE_WAIT_FUNCTION = `CREATE OR REPLACE FUNCTION ${WAIT_FUNCTION}(key int8, shared bool, timeout_ms int4)
RETURNS text LANGUAGE plpgsql AS $knex_dlock$
BEGIN
  -- Uncontended, a try is enough, and skips the subtransaction that the handler below costs.
  -- A try queues behind waiting requests as a wait does, so it does not jump the queue.
  IF (CASE WHEN shared THEN pg_try_advisory_lock_shared(key) ELSE pg_try_advisory_lock(key) END) THEN
    RETURN 'acquired';
  END IF;
  IF current_setting('statement_timeout') <> '0' THEN
    RETURN 'statement-timeout';
  END IF;
  -- 0 disables the timeout: that is how "forever" waits.
  PERFORM set_config('lock_timeout', timeout_ms || 'ms', true);
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

/** The wait function's call on `args`, answering `outcome` and, fenced, a token when acquired. */
function waitCall(args: string, fenced: boolean): string {
  return fenced
    ? `SELECT w.outcome, CASE WHEN w.outcome = 'acquired' THEN ${NEXT_TOKEN} END AS token ` +
        `FROM ${WAIT_FUNCTION}(${args}) AS w(outcome)`
    : `SELECT ${WAIT_FUNCTION}(${args}) AS outcome`;
}

const WAIT_FUNCTION_CALLS: readonly Statement[] = [
  { id: 'wait', text: waitCall('$1, $2, $3', false) },
  { id: 'fenced_wait', text: waitCall('$1, $2, $3', true) },
];

/** The call of the wait function, prepared once per connection: key, shared, timeout in ms. */
export function waitFunctionCall(mode: LockMode): Statement {
  return WAIT_FUNCTION_CALLS[mode.fencing ? 1 : 0] as Statement;
}

export function waitFunctionParams(key: bigint, mode: LockMode, wait: Wait): unknown[] {
  return [key, mode.shared, lockTimeoutMs(wait)];
}

/**
 * The wait function's call as one simple query that first lifts statement_timeout for its
 * implicit transaction, and first (re)defines the function when `create`: for a session that
 * has not got it yet, or has a statement_timeout in force. Still one round trip.
 */
export function waitFunctionScriptSql(key: bigint, mode: LockMode, wait: Wait, create: boolean) {
  const args = `${int8Literal(key)}, ${mode.shared}, ${lockTimeoutMs(wait)}`;
  const call =
    `SELECT set_config('statement_timeout', '0', true); ` + waitCall(args, mode.fencing === true);
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
  const grant = `SELECT ${functionName(mode, 'wait')}(${int8Literal(key)})`;
  const lock = mode.fencing ? `${grant}; SELECT ${NEXT_TOKEN} AS token` : grant;
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

/** A session-level lock function on row `t` of a batch: `t.k` its key, `t.s` whether shared. */
function batchCall(attempt: 'try' | 'unlock'): string {
  const exclusive = functionName({ shared: false, xact: false }, attempt);
  const shared = functionName({ shared: true, xact: false }, attempt);
  return `CASE WHEN t.s THEN ${shared}(t.k) ELSE ${exclusive}(t.k) END`;
}

/** Each row unlocks when `t.r`, else tries. */
const BATCH_CALL = `CASE WHEN t.r THEN ${batchCall('unlock')} ELSE ${batchCall('try')} END`;

/**
 * The rows of a batch, from array literals bound as parameters: keys, shared flags, release
 * flags (and fenced flags), with their ordinal `i`. Rows run in the order of the arrays.
 */
function batchRows(fenced: boolean): string {
  const arrays = ['$1::text::int8[]', '$2::text::bool[]', '$3::text::bool[]'];
  if (fenced) arrays.push('$4::text::bool[]');
  return `unnest(${arrays.join(', ')}) WITH ORDINALITY AS t(k, s, r, ${fenced ? 'f, ' : ''}i)`;
}

/**
 * Session-level unlocks and tries of many keys in one statement, prepared once per connection:
 * per row its ordinal `i` (an int4, cheaper to read than int8) and `ok` (released, or acquired); the fenced variant also a `token`
 * for each fenced grant. The subquery keeps the lock call out of the token's expression, so
 * each runs exactly once.
 */
export const BATCH: Statement = {
  id: 'batch',
  text: `SELECT t.i::int4 AS i, ${BATCH_CALL} AS ok FROM ${batchRows(false)}`,
};

export const FENCED_BATCH: Statement = {
  id: 'fenced_batch',
  text:
    `SELECT g.i::int4 AS i, g.ok, CASE WHEN g.ok AND g.f THEN ${NEXT_TOKEN} END AS token ` +
    `FROM (SELECT t.i, t.f, ${BATCH_CALL} AS ok FROM ${batchRows(true)}) g`,
};

/**
 * After a batch failed part way (a full lock table): unlocks the grants its tries made before
 * the failure. `$1` / `$2` are the tries' keys and shared flags. The session held none of them
 * before, so any own grant of one in its mode is the failed statement's.
 */
export const UNDO_TRIES: Statement = {
  id: 'undo_tries',
  text:
    `SELECT ${batchCall('unlock')} AS undone ` +
    `FROM unnest($1::text::int8[], $2::text::bool[]) AS t(k, s) ` +
    `WHERE EXISTS (SELECT 1 FROM pg_locks WHERE ${ownGrantFilter('t.k', 't.s')})`,
};
