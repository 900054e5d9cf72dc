/**
 * Question 10: how much process CPU does the library spend per acquire + release cycle above
 * what the raw driver spends for the same cycle, as a careful user writes it on the connection
 * the lock runs on (pg: named `pg_advisory_lock($1)` / `pg_advisory_unlock($1)`; mysql2: the
 * faster of `query` and `execute`)? CPU time (`process.cpuUsage`, user + system) is steadier
 * than wall time on a loaded machine. Library and raw alternate in interleaved rounds; the row
 * reports the library's CPU per cycle, its excess over the raw cycle's in the same round
 * (median and spread of the per-round differences) and the ratio.
 */
import { createLock, type BaseLock } from './library.js';
import { rawContenders } from './raw.js';
import {
  benchKey,
  cpuPerOperation,
  cpuRow,
  spread,
  type BenchContext,
  type Contender,
} from './runner.js';
import { TARGET_KINDS } from './targets.js';

const QUESTION = '10. library CPU per cycle';
/** The bounds on the CPU above raw, per cycle, in µs. */
const ABOVE_RAW_LIMIT: Readonly<Record<string, number>> = { 'pg.Client': 10, 'knex (pg)': 30 };

function libraryCycles(lock: BaseLock): Contender {
  return {
    name: 'knex-dlock',
    async batch(n) {
      for (let i = 0; i < n; i += 1) {
        await lock.acquire();
        await lock.release();
      }
    },
  };
}

export async function cpu(ctx: BenchContext): Promise<void> {
  const kinds = TARGET_KINDS.filter((kind) =>
    ['pg.Client', 'knex (pg)', 'mysql2 connection', 'knex (mysql2)'].includes(kind.name),
  );
  for (const kind of kinds) {
    ctx.log(`${QUESTION}: ${kind.name}`);
    const opened = await kind.open(ctx);
    try {
      const lock = createLock(opened.target, benchKey('cpu'));
      const library = libraryCycles(lock);
      const raws = rawContenders(
        opened.pinned,
        createLock(opened.target, benchKey('cpu-raw')).actualKey,
        'wait',
      );
      const rounds = ctx.quick ? 6 : 20;
      const perRound = ctx.quick ? 300 : 1_000;
      // Warm up: connections opened, statements prepared, code optimised.
      for (const contender of [library, ...raws]) await cpuPerOperation(contender, perRound);
      const mine: number[] = [];
      const raw: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        // The faster raw style of the round is the baseline, as for wall time.
        let best = Infinity;
        if (round % 2 === 0) mine.push(await cpuPerOperation(library, perRound));
        for (const contender of raws)
          best = Math.min(best, await cpuPerOperation(contender, perRound));
        if (round % 2 === 1) mine.push(await cpuPerOperation(library, perRound));
        raw.push(best);
      }
      const above = mine.map((value, i) => value - raw[i]!);
      const ratios = mine.map((value, i) => value / raw[i]!);
      const limit = ABOVE_RAW_LIMIT[kind.name];
      const question = `${QUESTION}: ${kind.name}`;
      const bound = limit === undefined ? '' : ` (issue's bound: ${limit} µs)`;
      ctx.rows.push(
        cpuRow(question, 'raw driver on the same connection (baseline)', raw),
        {
          ...cpuRow(question, 'knex-dlock', mine),
          ratio: spread(ratios).median,
          baseline: 'raw driver',
        },
        cpuRow(question, `knex-dlock above raw${bound}`, above),
      );
    } finally {
      await opened.close();
    }
  }
}
