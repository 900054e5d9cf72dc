import { databaseError, LockDeadlockError, LockTableFullError } from '../../errors.js';
import type { Row, SqlSession } from '../../drivers/types.js';
import {
  ensureInt64,
  hashToInt64,
  isBytes,
  rememberedPerString,
  utf8,
  type LockKey,
} from '../../keys.js';
import {
  cancelFromElsewhere,
  errorCode,
  firstRowValue,
  type Dialect,
  type Grant,
  type LockMode,
  type Wait,
} from '../dialect.js';
import { postgresBatching } from './batching.js';
import { grantOf, postgresFencingStore } from './fencing.js';
import { backendPidOf, postgresPinning } from './pinning.js';
import { postgresInspection } from './inspect.js';
import { postgresServerBounds } from './server-bounds.js';
import {
  failedWaitCleanupSql,
  lockStatement,
  plainWaitSql,
  ROLLBACK_SAVEPOINT,
  undoStrayGrantStatement,
  waitFunctionCall,
  waitFunctionParams,
  waitFunctionScriptSql,
} from './sql.js';
import { runStatement, takeTempDropped } from './statements.js';

const LOCK_TIMEOUT = '55P03';
const QUERY_CANCELED = '57014';
const DEADLOCK = '40P01';
const UNDEFINED_FUNCTION = '42883';
const INVALID_SCHEMA = '3F000';
const OUT_OF_SHARED_MEMORY = '53200';
/** Why a session cannot create a pg_temp function: no TEMP privilege, or a read-only standby. */
const CANNOT_CREATE = new Set(['42501', '25006']);

/** PostgreSQL's key: a string or bytes hash to int64 (BLAKE2b-64, little-endian), integers pass. */
const hashedString = rememberedPerString((key) => hashToInt64(utf8(key)));

export function postgresKey(key: LockKey): bigint {
  if (typeof key === 'string') return hashedString(key);
  if (isBytes(key)) return hashToInt64(key);
  if (typeof key === 'number' || typeof key === 'bigint') return ensureInt64(key);
  return ensureInt64(key satisfies never);
}

function deadlock(cause?: unknown): LockDeadlockError {
  return new LockDeadlockError(
    'PostgreSQL detected a deadlock between lock waits and failed this one: take locks in the ' +
      'same order everywhere, then retry.',
    { cause },
  );
}

/**
 * What a failed advisory-lock statement means: a full lock table is a typed error of its own,
 * anything unexpected a database error.
 */
function acquireError(err: unknown): Error {
  if (errorCode(err) !== OUT_OF_SHARED_MEMORY)
    return databaseError('Acquiring the advisory lock', err);
  return new LockTableFullError(
    "PostgreSQL's lock table is full (out of shared memory): all sessions together hold as many " +
      'locks as max_locks_per_transaction × (max_connections + max_prepared_transactions) allows. ' +
      'Release locks, or raise max_locks_per_transaction in postgresql.conf and restart the server.',
    { cause: err },
  );
}

/**
 * Per session: whether it has the wait function, cannot have one, or has a statement_timeout in
 * force, so that each wait must lift it in the same round trip.
 */
const WAIT_FUNCTION = Symbol('postgres wait function');
type WaitFunctionState = 'created' | 'unavailable' | 'lifts-statement-timeout';

function waitFunctionState(session: SqlSession): WaitFunctionState | undefined {
  // DISCARD TEMP / ALL seen on the connection: the function is gone.
  if (takeTempDropped(session)) session.memo.delete(WAIT_FUNCTION);
  return session.memo.get(WAIT_FUNCTION) as WaitFunctionState | undefined;
}

/**
 * A session-level wait through the pg_temp wait function: one round trip whatever the outcome.
 * Resolves undefined when this session cannot create the function (the caller then waits in
 * plain SQL).
 */
async function waitThroughFunction(
  session: SqlSession,
  key: bigint,
  mode: LockMode,
  wait: Wait,
  cancelled: () => boolean,
  prepared: boolean,
): Promise<Grant | false | undefined> {
  const state = waitFunctionState(session);
  const known = state !== undefined;
  let results: Row[][];
  try {
    results =
      state === 'created' && prepared
        ? await runStatement(
            session,
            waitFunctionCall(mode),
            waitFunctionParams(key, mode, wait),
            true,
          )
        : await session.query(waitFunctionScriptSql(key, mode, wait, !known));
  } catch (err) {
    const code = errorCode(err);
    if (known && (code === UNDEFINED_FUNCTION || code === INVALID_SCHEMA)) {
      // The session lost its temporary objects unseen: define the function again.
      session.memo.delete(WAIT_FUNCTION);
      return waitThroughFunction(session, key, mode, wait, cancelled, prepared);
    }
    if (!known && CANNOT_CREATE.has(code as string)) {
      session.memo.set(WAIT_FUNCTION, 'unavailable');
      return undefined;
    }
    // A cancel that landed outside the function's own handler may still have raced a grant.
    if (code === QUERY_CANCELED && cancelled()) {
      await runStatement(session, undoStrayGrantStatement(mode), [key], prepared);
      return false;
    }
    throw acquireError(err);
  }
  if (!known) session.memo.set(WAIT_FUNCTION, 'created');
  const outcome = firstRowValue(results[results.length - 1], 'outcome');
  if (outcome === 'acquired') return grantOf(session, key, mode, results);
  if (outcome === 'statement-timeout') {
    // The function did not wait: the session has a statement_timeout, which only a setting made
    // before the call can lift. Waits on this session lift it from now on.
    session.memo.set(WAIT_FUNCTION, 'lifts-statement-timeout');
    return waitThroughFunction(session, key, mode, wait, cancelled, prepared);
  }
  if (outcome === 'timeout' || (outcome === 'cancelled' && cancelled())) return false;
  if (outcome === 'deadlock') throw deadlock();
  throw databaseError(
    'Acquiring the advisory lock',
    new Error(`the wait ended with "${String(outcome)}" (cancelled by another session?)`),
  );
}

/** A blocking wait in plain SQL: inside transactions, and where pg_temp functions cannot be made. */
async function plainWait(
  session: SqlSession,
  key: bigint,
  mode: LockMode,
  wait: Wait,
  cancelled: () => boolean,
  inTransaction: boolean,
): Promise<Grant | false> {
  let results: Row[][];
  try {
    results = await session.query(plainWaitSql(key, mode, wait, inTransaction));
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
    if (code === DEADLOCK) throw deadlock(err);
    throw acquireError(err);
  }
  return grantOf(session, key, mode, results);
}

/**
 * PostgreSQL advisory locks: session or transaction level, exclusive or shared. With `prepared`,
 * the statements of every lock operation are prepared once per connection; without, they are
 * parsed each time (for poolers that cannot carry prepared statements).
 */
function postgresDialectWith(prepared: boolean): Dialect<bigint> {
  return {
    name: 'postgres',
    title: 'PostgreSQL',
    capabilities: { shared: true, xact: true, fencingInTransactions: true },

    convertKey: postgresKey,

    checkConvertedKey: ensureInt64,

    describeKey: (key) => `PostgreSQL advisory key ${key}`,

    async acquire(session, key, mode, wait, cancelled) {
      if (wait.kind === 'try') {
        const results = await runStatement(
          session,
          lockStatement(mode, 'try'),
          [key],
          prepared,
        ).catch((err: unknown) => Promise.reject(acquireError(err)));
        if (firstRowValue(results[0], 'acquired') !== true) return false;
        return grantOf(session, key, mode, results);
      }
      const inTransaction = session.inTransaction();
      if (!inTransaction && !mode.xact && waitFunctionState(session) !== 'unavailable') {
        const outcome = await waitThroughFunction(session, key, mode, wait, cancelled, prepared);
        if (outcome !== undefined) return outcome;
      }
      return plainWait(session, key, mode, wait, cancelled, inTransaction);
    },

    async release(session, key, mode) {
      const results = await runStatement(session, lockStatement(mode, 'unlock'), [key], prepared);
      return firstRowValue(results[0], 'released') === true;
    },

    cancel: (session) =>
      cancelFromElsewhere(session, 'SELECT pg_cancel_backend($1)', backendPidOf(session)),

    async ping(session) {
      // An empty query: the server answers without parsing or planning anything.
      await session.query('');
    },

    serverBounds: postgresServerBounds,

    pinning: postgresPinning,

    fencingStore: postgresFencingStore,

    sessions: postgresInspection.sessions,

    holderIds: postgresInspection.holderIds,

    batching: postgresBatching(prepared),
  };
}

export const postgresDialect = postgresDialectWith(true);

/** {@link postgresDialect} without prepared statements. */
export const unpreparedPostgresDialect = postgresDialectWith(false);
