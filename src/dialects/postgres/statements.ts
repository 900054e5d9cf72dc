/**
 * PostgreSQL prepared statements of the library's own: each fixed statement is parsed once per
 * connection and then only bound and executed, which saves the server a parse and a plan per
 * lock operation.
 *
 * A session can lose its prepared statements without the driver knowing: `DISCARD ALL` and
 * `DEALLOCATE ALL` drop them, and the driver would then bind a name the server no longer has.
 * Names carry a generation: when the connection reports such a command, or the server answers
 * that a name does not exist, the generation moves on and the next use prepares afresh under a
 * new name.
 */
import { databaseError } from '../../errors.js';
import type { Row, SqlSession } from '../../drivers/types.js';
import { errorCode } from '../dialect.js';

/** A fixed statement: `id` names it within the library (letters, digits, underscores). */
export interface Statement {
  readonly id: string;
  readonly text: string;
}

/** The server does not have the named statement (26000), or already has one by that name (42P05). */
const STATEMENT_MISMATCH = new Set(['26000', '42P05']);

interface SessionStatements {
  generation: number;
  /** Whether DISCARD TEMP / ALL dropped the session's functions since the dialect last looked. */
  tempDropped: boolean;
}

const STATEMENTS = Symbol('postgres statements');

function statementsOf(session: SqlSession): SessionStatements {
  let state = session.memo.get(STATEMENTS) as SessionStatements | undefined;
  if (!state) {
    const created: SessionStatements = { generation: 0, tempDropped: false };
    state = created;
    session.memo.set(STATEMENTS, created);
    session.watchCommandTags?.((tag) => {
      if (tag === 'DISCARD ALL' || tag.startsWith('DEALLOCATE')) created.generation += 1;
      if (tag === 'DISCARD ALL' || tag === 'DISCARD TEMP') created.tempDropped = true;
    });
  }
  return state;
}

/**
 * Whether the session's temporary objects were dropped (DISCARD TEMP / ALL seen on the
 * connection) since the last call; resets the flag.
 */
export function takeTempDropped(session: SqlSession): boolean {
  const state = statementsOf(session);
  const dropped = state.tempDropped;
  state.tempDropped = false;
  return dropped;
}

const POOLED = Symbol('postgres behind a pooler');

/**
 * Marks `session` as one that reaches its server through a pooler: its statements are never
 * prepared, since a pooler in transaction mode may run the next one on a server session that
 * never saw the statement (PgBouncer before 1.21).
 */
export function markPooled(session: SqlSession): void {
  session.memo.set(POOLED, true);
}

/** Whether {@link markPooled} marked `session`. */
export function isPooled(session: SqlSession): boolean {
  return session.memo.has(POOLED);
}

/**
 * Runs `statement` with `params`: as a prepared statement when `prepared`, else as an unnamed
 * one (parsed every time, for poolers that cannot carry prepared statements; always so behind
 * a pooler). A prepared
 * statement the server lost is prepared again, invisibly, outside a transaction; inside one the
 * failed statement has aborted the transaction, so that is reported.
 */
export async function runStatement(
  session: SqlSession,
  statement: Statement,
  params: readonly unknown[],
  prepared: boolean,
): Promise<Row[][]> {
  if (!prepared || isPooled(session)) return session.query(statement.text, params);
  const state = statementsOf(session);
  const generation = state.generation;
  try {
    return await session.query(statement.text, params, nameOf(statement, generation));
  } catch (err) {
    if (!STATEMENT_MISMATCH.has(errorCode(err) as string)) throw err;
    // The failed statement did not run: the server refused it at parse or bind.
    if (state.generation === generation) state.generation += 1;
    if (session.inTransaction()) throw lostInTransaction(err);
    return session
      .query(statement.text, params, nameOf(statement, state.generation))
      .catch((retryErr: unknown) =>
        Promise.reject(
          STATEMENT_MISMATCH.has(errorCode(retryErr) as string) ? notCarried(retryErr) : retryErr,
        ),
      );
  }
}

function nameOf(statement: Statement, generation: number): string {
  return `knex_dlock_${generation}_${statement.id}`;
}

function lostInTransaction(cause: unknown) {
  return databaseError(
    'Running a prepared lock statement',
    new Error(
      'the server dropped the prepared statement (DEALLOCATE or DISCARD inside this ' +
        'transaction), which aborted the transaction; retry the transaction: the statement ' +
        'is prepared again',
      { cause },
    ),
  );
}

function notCarried(cause: unknown) {
  return databaseError(
    'Running a prepared lock statement',
    new Error(
      'prepared statements do not survive on this connection (a pooler in transaction mode ' +
        'without prepared-statement support?); create the lock with preparedStatements: false',
      { cause },
    ),
  );
}
