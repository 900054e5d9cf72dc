/**
 * Releases and tries of many advisory locks in one statement (see `Batching`): the keys and
 * their modes travel as array literals built from validated integers and booleans, bound as
 * parameters, so the statement text is fixed and prepared once per connection.
 */
import { databaseError } from '../../errors.js';
import type { Row } from '../../drivers/types.js';
import { errorCode, type BatchedTry, type BatchItem, type Batching } from '../dialect.js';
import { grantOf } from './fencing.js';
import { BATCH, FENCED_BATCH, UNDO_TRIES } from './sql.js';
import { runStatement } from './statements.js';

/** The lock table is full: only a try can meet it, and it takes nothing for that key. */
const OUT_OF_SHARED_MEMORY = '53200';

function arrayLiteral(values: readonly (bigint | boolean)[]): string {
  return `{${values.join(',')}}`;
}

/** The rows of a batch statement, in the order of its items (by their ordinal `i`, from 1). */
function inOrder(rows: readonly Row[], length: number): (Row | undefined)[] {
  const ordered = new Array<Row | undefined>(length);
  for (const row of rows) ordered[Number(row.i) - 1] = row;
  return ordered;
}

export function postgresBatching(prepared: boolean): Batching<bigint> {
  return {
    // Transaction-level locks are never taken on a lock connection.
    batches: (mode) => !mode.xact,

    async run(session, releases, tries) {
      const items = [...releases, ...tries];
      const keys = arrayLiteral(items.map((item) => item.key));
      const shared = arrayLiteral(items.map((item) => item.mode.shared));
      const release = arrayLiteral(items.map((_, i) => i < releases.length));
      const fenced = tries.some((item) => item.mode.fencing === true);
      const params = [keys, shared, release];
      if (fenced) params.push(arrayLiteral(items.map((item) => item.mode.fencing === true)));
      let rows: Row[];
      try {
        [rows = []] = await runStatement(session, fenced ? FENCED_BATCH : BATCH, params, prepared);
      } catch (err) {
        // Releases come first, so a full lock table met by a try came after all of them.
        const releasesRan = releases.length === 0 || errorCode(err) === OUT_OF_SHARED_MEMORY;
        if (!releasesRan) throw err;
        // Advisory locks outlive a failed statement: the tries before the failure hold theirs.
        const undo = [tries.map((t) => t.key), tries.map((t) => t.mode.shared)].map(arrayLiteral);
        await runStatement(session, UNDO_TRIES, undo, prepared).catch((undoErr: unknown) =>
          Promise.reject(databaseError('Undoing a failed batch of tries', undoErr)),
        );
        // The session held each released key: the library releases only what it holds.
        return { released: releases.map(() => true), tried: undefined };
      }
      const ordered = inOrder(rows, items.length);
      return {
        released: releases.map((_, i) => ordered[i]?.ok === true),
        tried: tries.map((item: BatchItem<bigint>, i): BatchedTry => {
          const row = ordered[releases.length + i];
          if (row?.ok !== true) return false;
          return grantOf(session, item.key, item.mode, [[row]]);
        }),
      };
    },
  };
}
