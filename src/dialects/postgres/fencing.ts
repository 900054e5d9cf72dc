/**
 * Fencing tokens on PostgreSQL: `nextval` of one sequence, taken in the statement that grants
 * the lock, with the server's timeline above it so that tokens keep increasing across a
 * failover (see `NEXT_TOKEN` and `tokenOf` in sql.ts). A sequence is not transactional, so a rollback never
 * takes a token back, and it works alike inside and outside transactions at any isolation
 * level; it increases across the whole cluster, so every grant's token is larger than every
 * token taken before it, whatever the key. A transaction id (`pg_current_xact_id()`) would need
 * no setup, but inside a transaction it is the transaction's own, assigned maybe long before
 * the grant and shared by all its grants: an older transaction could be granted the lock after
 * a younger one, with a smaller token.
 */
import type { Row, SqlSession } from '../../drivers/types.js';
import { FencingUnavailableError } from '../../errors.js';
import {
  firstRowValue,
  GRANTED,
  type FencingStore,
  type Grant,
  type LockMode,
} from '../dialect.js';
import { FENCING_SEQUENCE, tokenOf, undoStrayGrantSql } from './sql.js';

/** The one-line setup, for messages, the README and `setUpFencing`. */
export const POSTGRES_FENCING_SETUP = `CREATE SEQUENCE IF NOT EXISTS ${FENCING_SEQUENCE}`;

export const postgresFencingStore: FencingStore = {
  what: `sequence ${FENCING_SEQUENCE}`,
  setup: POSTGRES_FENCING_SETUP,
  grant: `GRANT USAGE ON SEQUENCE ${FENCING_SEQUENCE} TO <user>`,
};

/** The token in a statement's results (the last result set that has a `token` column). */
function tokenIn(results: Row[][]): bigint | undefined {
  for (let i = results.length - 1; i >= 0; i -= 1) {
    const rows = results[i];
    if (rows?.[0] && 'token' in rows[0]) {
      const value = firstRowValue(rows, 'token');
      return value === null || value === undefined ? undefined : BigInt(String(value));
    }
  }
  return undefined;
}

/**
 * The grant that `results` (of a statement that was granted the lock) stand for; a promise
 * only when the token must still be taken, so that unfenced grants cost no extra tick.
 */
export function grantOf(
  session: SqlSession,
  key: bigint,
  mode: LockMode,
  results: Row[][],
): Grant | Promise<Grant> {
  if (!mode.fencing) return GRANTED;
  const token = tokenIn(results);
  if (token !== undefined) return { token };
  return tokenAfterGrant(session, key, mode).then((taken) => ({ token: taken }));
}

/**
 * A grant came without a token. Outside a transaction, the sequence is created (the first
 * fenced lock of a database does so) and the token taken. Otherwise, or if that fails, a
 * session-level grant is undone and FencingUnavailableError thrown; a transaction-level grant
 * stays with its transaction, which nothing can release early.
 */
async function tokenAfterGrant(session: SqlSession, key: bigint, mode: LockMode): Promise<bigint> {
  let cause: unknown;
  const inTransaction = session.inTransaction();
  if (!inTransaction) {
    try {
      const token = tokenIn(
        await session.query(
          `${POSTGRES_FENCING_SETUP}; SELECT ${tokenOf(`nextval('${FENCING_SEQUENCE}')`)} AS token`,
        ),
      );
      if (token !== undefined) return token;
    } catch (err) {
      cause = err;
    }
  }
  if (!mode.xact) await session.query(undoStrayGrantSql(key, mode)).catch(() => undefined);
  throw new FencingUnavailableError(
    'The lock was granted, but no fencing token could be taken, so it was not kept: the ' +
      `sequence ${FENCING_SEQUENCE} is missing or this user may not use it, or the session is ` +
      `read-only${inTransaction ? ', or it is missing and cannot be created inside a transaction' : ''}. ` +
      `Create it once: \`${POSTGRES_FENCING_SETUP}\` (or \`knex-dlock setup-fencing\`, or ` +
      'setUpFencing(target)), grant USAGE on it to the users that lock, and lock on a writable ' +
      `server.${mode.xact ? ' The transaction holds the lock until it ends: roll it back.' : ''}`,
    { cause },
  );
}
