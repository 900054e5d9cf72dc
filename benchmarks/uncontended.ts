/**
 * Question 1: what does an uncontended acquire (blocking) + release cost, per target kind, next
 * to the raw driver as a careful user writes it on a connection it keeps (named
 * `pg_advisory_lock($1)` / `pg_advisory_unlock($1)`; mysql2's faster of `query` and `execute`
 * for `GET_LOCK` / `RELEASE_LOCK`), and next to the floor: two bare `SELECT 1` round trips on
 * that connection?
 *
 * On a knex instance the library runs in its default mode (multiplexed: lock connections of
 * its own) and with `connection: 'pool'` (borrowing knex's other pooled connection for each
 * lock); on pg.Pool and mysql2 pools in the default mode. The library's own statements,
 * recorded and replayed by hand, are a diagnostic row: they split the library's cost into
 * what its SQL costs the server and what its JavaScript costs.
 */
import { compare, type Comparison, type LibraryContender } from './compare.js';
import { createLock, type BaseLock, type LockOptions } from './library.js';
import { bareRoundTrips, floorStyles, rawContenders, replay, sendAll } from './raw.js';
import { describeCounts, recordCycle } from './recording.js';
import { benchKey, type BenchContext, type Contender } from './runner.js';
import { TARGET_KINDS, type OpenedTarget, type TargetKind } from './targets.js';

const QUESTION = '1. uncontended acquire+release';
/** A lock on a connection the caller owns, against the raw driver on it and the floor. */
const PINNED_VS_RAW = 1.1;
const PINNED_VS_FLOOR = 1.15;
/** A knex instance (default mode) against the raw driver on a connection it keeps. */
const KNEX_VS_RAW = 1.15;

async function cycle(lock: BaseLock): Promise<void> {
  await lock.acquire();
  await lock.release();
}

function libraryLoop(name: string, lock: BaseLock, targets?: object): LibraryContender {
  return {
    name,
    ...targets,
    async batch(n) {
      for (let i = 0; i < n; i += 1) await cycle(lock);
    },
  };
}

/** The library's contenders on `kind`, with the targets. */
function libraryContenders(kind: TargetKind, target: object, lock: BaseLock): LibraryContender[] {
  switch (kind.reach) {
    case 'pinned':
      return [libraryLoop('knex-dlock', lock, { vsRaw: PINNED_VS_RAW, vsFloor: PINNED_VS_FLOOR })];
    case 'transaction':
      return [libraryLoop('knex-dlock', lock)];
    case 'pooled': {
      if (!kind.knexInstance) return [libraryLoop('knex-dlock (multiplexed, default)', lock)];
      const options: LockOptions = { connection: 'pool' };
      const pooled = createLock(target, benchKey('uncontended-pool'), options);
      return [
        libraryLoop('knex-dlock (multiplexed, default)', lock, { vsRaw: KNEX_VS_RAW }),
        libraryLoop("knex-dlock (connection: 'pool')", pooled),
      ];
    }
  }
}

/** On a pg client the library also runs unprepared, to show what preparing saves. */
function unpreparedDiagnostic(kind: TargetKind, target: object): Contender[] {
  if (kind.database !== 'pg' || kind.reach !== 'pinned') return [];
  const lock = createLock(target, benchKey('uncontended-unprepared'), {
    preparedStatements: false,
  });
  return [libraryLoop('diagnostic: knex-dlock, preparedStatements: false', lock)];
}

async function comparisonOn(kind: TargetKind, opened: OpenedTarget): Promise<Comparison> {
  const { target, pinned } = opened;
  const lock = createLock(target, benchKey('uncontended'));
  const recorded = await recordCycle(opened.countOn ?? target, () => cycle(lock));
  // The kept connection gets what the library's warm-up set up (the pg_temp wait function).
  await sendAll(pinned, recorded.setup);
  const rawKey = createLock(target, benchKey('uncontended-raw')).actualKey;
  return {
    question: `${QUESTION}: ${kind.name}`,
    library: libraryContenders(kind, target, lock),
    raw: rawContenders(pinned, rawKey, 'wait'),
    floor: floorStyles(pinned).map((style) => bareRoundTrips(pinned, style)),
    diagnostics: [
      replay(pinned, recorded.calls, describeCounts(recorded.counts)),
      ...unpreparedDiagnostic(kind, target),
    ],
  };
}

export async function uncontended(ctx: BenchContext): Promise<void> {
  for (const kind of TARGET_KINDS) {
    ctx.log(`${QUESTION}: ${kind.name}`);
    const opened = await kind.open(ctx);
    try {
      await compare(ctx, await comparisonOn(kind, opened));
    } finally {
      await opened.close();
    }
  }
}
