/**
 * Tries and releases of many named locks in one `SELECT` (see `Batching`): one bound
 * `GET_LOCK(?, 0)` or `RELEASE_LOCK(?)` per name, evaluated left to right. A fenced grant then
 * takes its token on its own, as a single fenced try does.
 */
import { databaseError } from '../../errors.js';
import type { Row, SqlSession } from '../../drivers/types.js';
import { GRANTED, type BatchedTry, type Batching, type Grant } from '../dialect.js';
import { getLockValueOutcome } from './outcomes.js';

/**
 * Whether the session is in a transaction, or has autocommit off so that the next write opens
 * one: a fencing token cannot be taken there (see fencing.ts). MariaDB only: MySQL has no
 * `@@in_transaction`, and asks with one statement more.
 */
export const IN_TRANSACTION = '@@in_transaction OR NOT @@autocommit AS in_transaction';

/** The statement text for `count` names, made once per count. */
function selectOf(cache: Map<string, string>, call: string, count: number, extra = ''): string {
  const id = `${call}:${count}:${extra}`;
  let sql = cache.get(id);
  if (sql === undefined) {
    const args = call === 'GET_LOCK' ? '?, 0' : '?';
    const columns = Array.from({ length: count }, (_, i) => `${call}(${args}) AS r${i}`);
    sql = `SELECT ${columns.join(', ')}${extra ? `, ${extra}` : ''}`;
    cache.set(id, sql);
  }
  return sql;
}

/** What a batch needs of the MySQL dialect: its fenced grant, and the server's flavor. */
export interface MysqlBatchingParts {
  fencedGrant(
    session: SqlSession,
    name: string,
    inTransaction: boolean | undefined,
  ): Promise<Grant>;
  flavor(session: SqlSession): 'mysql' | 'mariadb' | undefined;
}

export function mysqlBatching(parts: MysqlBatchingParts): Batching<string> {
  const statements = new Map<string, string>();
  const values = (rows: Row[][]) => rows[0]?.[0] ?? {};
  return {
    batches: () => true,

    async tryAll(session, items) {
      const names = items.map((item) => item.key);
      const fenced = items.some((item) => item.mode.fencing === true);
      const asksTransaction = fenced && parts.flavor(session) === 'mariadb';
      let row: Row;
      try {
        row = values(
          await session.query(
            selectOf(statements, 'GET_LOCK', names.length, asksTransaction ? IN_TRANSACTION : ''),
            names,
          ),
        );
      } catch {
        // Named locks outlive a failed statement: the names before the failure are held.
        // RELEASE_LOCK of a name this session does not hold changes nothing.
        await session
          .query(selectOf(statements, 'RELEASE_LOCK', names.length), names)
          .catch((undoErr: unknown) =>
            Promise.reject(databaseError('Undoing a failed batch of tries', undoErr)),
          );
        return undefined;
      }
      const inTransaction = asksTransaction ? row.in_transaction == 1 : undefined;
      return names.map((name, i): BatchedTry => {
        const outcome = getLockValueOutcome(row[`r${i}`], false, name);
        if (outcome.kind === 'not-acquired') return false;
        if (outcome.kind === 'failed') return Promise.reject(outcome.error);
        return items[i]!.mode.fencing ? parts.fencedGrant(session, name, inTransaction) : GRANTED;
      });
    },

    async releaseAll(session, items) {
      const names = items.map((item) => item.key);
      const row = values(
        await session.query(selectOf(statements, 'RELEASE_LOCK', names.length), names),
      );
      return names.map((_, i) => {
        const value = row[`r${i}`];
        return value === 1 || value === 1n;
      });
    },
  };
}
