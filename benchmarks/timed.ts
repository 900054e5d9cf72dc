/**
 * Question 2: what does an uncontended timed acquire (`timeout: 1000`) + release cost on a
 * connection the caller owns, next to the cheapest way to take a free lock by hand: a raw
 * try-lock + unlock (named `pg_try_advisory_lock($1)` / `pg_advisory_unlock($1)`; mysql2's
 * faster of `query` and `execute` for `GET_LOCK(?, 0)` / `RELEASE_LOCK(?)`), and next to the
 * floor, two bare `SELECT 1` round trips? The library's own statements replayed by hand are a
 * diagnostic row.
 */
import { compare } from './compare.js';
import { createLock, type BaseLock } from './library.js';
import { bareRoundTrips, floorStyles, rawContenders, replay, sendAll } from './raw.js';
import { describeCounts, recordCycle } from './recording.js';
import { benchKey, type BenchContext, type Contender } from './runner.js';
import { PINNED_KINDS } from './targets.js';

const QUESTION = '2. timed acquire (1 s) + release';
const TARGET_VS_RAW = 1.1;
const TIMEOUT_MS = 1_000;

async function timedCycle(lock: BaseLock): Promise<void> {
  if (!(await lock.acquire({ timeout: TIMEOUT_MS }))) throw new Error('the lock was busy');
  await lock.release();
}

function libraryLoop(name: string, lock: BaseLock): Contender {
  return {
    name,
    async batch(n) {
      for (let i = 0; i < n; i += 1) await timedCycle(lock);
    },
  };
}

export async function timed(ctx: BenchContext): Promise<void> {
  for (const kind of PINNED_KINDS) {
    ctx.log(`${QUESTION}: ${kind.name}`);
    const { target, pinned, close } = await kind.open(ctx);
    try {
      const lock = createLock(target, benchKey('timed'));
      const recorded = await recordCycle(target, () => timedCycle(lock));
      await sendAll(pinned, recorded.setup);
      const diagnostics = [replay(pinned, recorded.calls, describeCounts(recorded.counts))];
      if (kind.database === 'pg') {
        const unprepared = createLock(target, benchKey('timed-unprepared'), {
          preparedStatements: false,
        });
        diagnostics.push(
          libraryLoop('diagnostic: knex-dlock, preparedStatements: false', unprepared),
        );
      }
      await compare(ctx, {
        question: `${QUESTION}: ${kind.name}`,
        library: [{ ...libraryLoop('knex-dlock', lock), vsRaw: TARGET_VS_RAW }],
        raw: rawContenders(pinned, createLock(target, benchKey('timed-raw')).actualKey, 'try'),
        floor: floorStyles(pinned).map((style) => bareRoundTrips(pinned, style)),
        diagnostics,
      });
    } finally {
      await close();
    }
  }
}
