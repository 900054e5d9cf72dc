/**
 * Releases and tries of many named locks in one `SELECT` (see `Batching`): one bound
 * `RELEASE_LOCK(?)` or `GET_LOCK(?, 0)` per name, evaluated left to right. A fenced grant then
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

/** What a batch needs of the MySQL dialect: its fenced grant, and the server's flavor. */
export interface MysqlBatchingParts {
  fencedGrant(
    session: SqlSession,
    name: string,
    inTransaction: boolean | undefined,
  ): Promise<Grant>;
  flavor(session: SqlSession): 'mysql' | 'mariadb' | undefined;
}

const isOne = (value: unknown) => value === 1 || value === 1n;

export function mysqlBatching(parts: MysqlBatchingParts): Batching<string> {
  /** Statement texts by shape: so many releases, so many tries, whether it asks for the transaction. */
  const texts = new Map<string, string>();
  function textOf(releases: number, tries: number, asks: boolean): string {
    const id = `${releases}:${tries}:${asks}`;
    let text = texts.get(id);
    if (text === undefined) {
      const columns: string[] = [];
      for (let i = 0; i < releases + tries; i += 1) {
        columns.push(i < releases ? `RELEASE_LOCK(?) AS r${i}` : `GET_LOCK(?, 0) AS r${i}`);
      }
      if (asks) columns.push(IN_TRANSACTION);
      text = `SELECT ${columns.join(', ')}`;
      texts.set(id, text);
    }
    return text;
  }

  return {
    batches: () => true,

    async run(session, releases, tries) {
      const names = [...releases, ...tries].map((item) => item.key);
      const asks = parts.flavor(session) === 'mariadb' && tries.some((t) => t.mode.fencing);
      let row: Row;
      try {
        const [rows = []] = await session.query(textOf(releases.length, tries.length, asks), names);
        row = rows[0] ?? {};
      } catch (err) {
        // A release may or may not have run: what the session holds cannot be told.
        if (releases.length > 0) throw err;
        // Named locks outlive a failed statement: the names before the failure are held.
        // RELEASE_LOCK of a name this session does not hold changes nothing.
        await session
          .query(textOf(names.length, 0, false), names)
          .catch((undoErr: unknown) =>
            Promise.reject(databaseError('Undoing a failed batch of tries', undoErr)),
          );
        return { released: [], tried: undefined };
      }
      const inTransaction = asks ? row.in_transaction == 1 : undefined;
      return {
        released: releases.map((_, i) => isOne(row[`r${i}`])),
        tried: tries.map(({ key: name, mode }, i): BatchedTry => {
          const outcome = getLockValueOutcome(row[`r${releases.length + i}`], false, name);
          if (outcome.kind === 'not-acquired') return false;
          if (outcome.kind === 'failed') return Promise.reject(outcome.error);
          return mode.fencing ? parts.fencedGrant(session, name, inTransaction) : GRANTED;
        }),
      };
    },
  };
}
