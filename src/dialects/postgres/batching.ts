/**
 * Tries and releases of many advisory locks in one statement (see `Batching`): the keys and
 * their modes travel as array literals built from validated integers and booleans, bound as
 * parameters, so the statement text is fixed and prepared once per connection.
 */
import { databaseError } from '../../errors.js';
import type { Row } from '../../drivers/types.js';
import type { BatchedTry, BatchItem, Batching } from '../dialect.js';
import { grantOf } from './fencing.js';
import { FENCED_TRY_ALL, RELEASE_ALL, TRY_ALL, UNDO_ALL } from './sql.js';
import { runStatement } from './statements.js';

function arrayLiteral(values: readonly (bigint | boolean)[]): string {
  return `{${values.join(',')}}`;
}

/** The rows of a batch statement, in the order of its items (by their ordinal `i`, from 1). */
function inOrder(rows: readonly Row[], length: number): Row[] {
  const ordered = new Array<Row>(length);
  for (const row of rows) ordered[Number(row.i) - 1] = row;
  return ordered;
}

export function postgresBatching(prepared: boolean): Batching<bigint> {
  return {
    // Transaction-level locks are never taken on a lock connection.
    batches: (mode) => !mode.xact,

    async tryAll(session, items) {
      const keys = arrayLiteral(items.map((item) => item.key));
      const shared = arrayLiteral(items.map((item) => item.mode.shared));
      const fenced = items.some((item) => item.mode.fencing === true);
      const params = fenced
        ? [keys, shared, arrayLiteral(items.map((item) => item.mode.fencing === true))]
        : [keys, shared];
      let rows: Row[];
      try {
        [rows = []] = await runStatement(
          session,
          fenced ? FENCED_TRY_ALL : TRY_ALL,
          params,
          prepared,
        );
      } catch {
        // Advisory locks outlive a failed statement: the rows before the failure hold theirs.
        await runStatement(session, UNDO_ALL, [keys, shared], prepared).catch((undoErr: unknown) =>
          Promise.reject(databaseError('Undoing a failed batch of tries', undoErr)),
        );
        // A full lock table, say: each try meets it, or not, on its own.
        return undefined;
      }
      return inOrder(rows, items.length).map((row, index): BatchedTry => {
        if (row?.acquired !== true) return false;
        const { key, mode } = items[index] as BatchItem<bigint>;
        return grantOf(session, key, mode, [[row]]);
      });
    },

    async releaseAll(session, items) {
      const keys = arrayLiteral(items.map((item) => item.key));
      const shared = arrayLiteral(items.map((item) => item.mode.shared));
      const [rows = []] = await runStatement(session, RELEASE_ALL, [keys, shared], prepared);
      return inOrder(rows, items.length).map((row) => row?.released === true);
    },
  };
}
