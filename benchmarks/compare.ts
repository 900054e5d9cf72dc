/**
 * One comparison of the acquire + release questions: the library's contenders, the raw driver
 * as a careful user writes it, the floor (two bare round trips) and diagnostics, all timed
 * side by side (interleaved), and the rows they become. Where several raw or floor contenders
 * run (mysql2's query and execute; pg's simple and named SELECT 1), the faster is the baseline.
 */
import {
  fastest,
  interleave,
  pairedRatio,
  spread,
  type BenchContext,
  type Contender,
  type ResultRow,
} from './runner.js';

export interface LibraryContender extends Contender {
  /** The target for its ratio to the raw baseline, and to the floor. */
  readonly vsRaw?: number;
  readonly vsFloor?: number;
}

export interface Comparison {
  readonly question: string;
  /** What the `raw` contenders are, in the rows' metric: 'raw' unless said. */
  readonly rawLabel?: string;
  readonly library: readonly LibraryContender[];
  readonly raw: readonly Contender[];
  readonly floor: readonly Contender[];
  /** Never a baseline: they explain where the library's time goes. */
  readonly diagnostics: readonly Contender[];
}

export const rounds = (ctx: BenchContext) => (ctx.quick ? 7 : 31);
export const perBatch = (ctx: BenchContext) => (ctx.quick ? 60 : 100);

/** Times every contender of `comparison` side by side and adds its rows to the table. */
export async function compare(ctx: BenchContext, comparison: Comparison): Promise<void> {
  const { question, library, raw, floor, diagnostics, rawLabel = 'raw' } = comparison;
  const timings = await interleave([...library, ...raw, ...floor, ...diagnostics], {
    rounds: rounds(ctx),
    perBatch: perBatch(ctx),
  });
  const rawBase = fastest(
    timings,
    raw.map((c) => c.name),
  );
  const floorBase = fastest(
    timings,
    floor.map((c) => c.name),
  );
  const row = (
    name: string,
    baseline: string,
    versus: string,
    target?: number,
    mark = '',
  ): ResultRow => {
    const values = timings.get(name)!;
    const micros = values.map((ms) => ms * 1000);
    return {
      question,
      contender: `${name}${mark}`,
      metric: `per cycle, vs ${versus}`,
      unit: 'µs',
      ...spread(micros),
      samples: values.length,
      ratio: pairedRatio(values, timings.get(baseline)!),
      baseline,
      target,
    };
  };
  const several = (contenders: readonly Contender[]) => contenders.length > 1;
  const rawMark = several(raw) ? ' (faster: baseline)' : ' (baseline)';
  const floorMark = several(floor) ? ' (faster: floor)' : ' (floor)';
  ctx.rows.push(
    ...library.flatMap((c) => [
      row(c.name, rawBase, rawLabel, c.vsRaw),
      row(c.name, floorBase, 'floor', c.vsFloor),
    ]),
    ...raw.map((c) =>
      row(c.name, floorBase, 'floor', undefined, c.name === rawBase ? rawMark : ''),
    ),
    ...floor.map((c) =>
      row(c.name, floorBase, 'floor', undefined, c.name === floorBase ? floorMark : ''),
    ),
    ...diagnostics.map((c) => row(c.name, rawBase, rawLabel)),
  );
}
