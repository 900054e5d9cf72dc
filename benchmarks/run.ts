/**
 * Runs every benchmark question against the local databases, prints one table of medians,
 * spreads and ratios, and writes it as JSON to benchmarks/results/latest.json.
 *
 *   npm run bench            # about 4 minutes on 2 cores
 *   npm run bench -- --quick # under 1 minute, fewer rounds and samples
 *   npm run bench -- --source # the TypeScript sources through tsx instead of dist/esm
 *   npm run bench -- --only uncontended,timed # only these questions (names below, comma-separated)
 *
 * The questions, by `--only` name, in the order they run, with the time each takes in a full run
 * on 2 cores (each question logs its own):
 *
 * - uncontended (~1 min): acquire + release per target kind (pg.Client, knex, knex
 *   transaction, pg.Pool; mysql2 connection, knex, knex transaction, mysql2 pool) against the
 *   raw driver as a careful user writes it on a connection it keeps (pg: named statements;
 *   mysql2: the faster of query and execute) and against two bare `SELECT 1` round trips, with
 *   the library's own SQL replayed by hand as a diagnostic.
 * - timed (~20 s): `acquire({ timeout: 1000 })` + release on a pg client and a mysql2
 *   connection against the raw try-lock + unlock.
 * - handoff (~15 s): release → held under contention against the native blocking call, and the
 *   waiter's round trips while it waits.
 * - many-waiters: 200 waiters on one key through one knex instance.
 * - peers (~35 s): cycles per second through pools and knex against redlock on the local Redis,
 *   sequential and with 16 workers.
 * - memory: heap per lock object, idle and held.
 * - connections: where the locks of a knex instance run (multiplexed, 'pool', redlock) with 16
 *   workers, and the server connections they take.
 * - fencing (~40 s): acquire + release with `fencing: true` against the same lock without and
 *   against fencing by hand, on a pg client and a mysql2 connection.
 *
 * - channels (~15 s): the diagnostics channels' cost with nobody subscribed (the subscriber
 *   check, timed alone) and the CPU per cycle with a subscriber on all three, against none.
 * - cpu (~1 min): the library's process CPU per acquire + release cycle above the raw driver's
 *   on the same connection (pg.Client, knex, mysql2 connection, knex on mysql2).
 *
 * Every ratio pairs the contender with its baseline round by round (both ran back to back in
 * the same round, interleaved) and reports the median of those per-round ratios.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import pg from 'pg';
import { channels } from './channels.js';
import { connections } from './connections/index.js';
import { cpu } from './cpu.js';
import { fencing } from './fencing.js';
import { handoffLatency } from './handoff.js';
import { librarySource } from './library.js';
import { manyWaiters } from './many-waiters.js';
import { memory } from './memory.js';
import { peers } from './peers.js';
import {
  closeRaw,
  createContext,
  higherIsBetter,
  mysqlConnection,
  pgClient,
  rawQuery,
  type BenchContext,
  type ResultRow,
} from './runner.js';
import { timed } from './timed.js';
import { uncontended } from './uncontended.js';

/** Every question by its `--only` name, in the order they run. */
const QUESTIONS: Readonly<Record<string, (ctx: BenchContext) => Promise<void>>> = {
  uncontended,
  timed,
  handoff: handoffLatency,
  'many-waiters': manyWaiters,
  peers,
  memory,
  connections,
  fencing,
  channels,
  cpu,
};

/** The names of the questions `--only a,b` (or `--only=a,b`) selects, else of all of them. */
function selectedQuestions(argv: readonly string[]): string[] {
  const at = argv.findIndex((arg) => arg === '--only' || arg.startsWith('--only='));
  if (at < 0) return Object.keys(QUESTIONS);
  const arg = argv[at]!;
  const list = arg === '--only' ? argv[at + 1] : arg.slice('--only='.length);
  const names = (list ?? '').split(',').filter((name) => name !== '');
  const unknown = names.filter((name) => !Object.hasOwn(QUESTIONS, name));
  if (names.length === 0 || unknown.length > 0) {
    throw new Error(
      `--only takes question names separated by commas${unknown.length > 0 ? `, not ${unknown.join(', ')}` : ''}; ` +
        `the questions are: ${Object.keys(QUESTIONS).join(', ')}.`,
    );
  }
  return Object.keys(QUESTIONS).filter((name) => names.includes(name));
}

async function serverVersions(ctx: BenchContext): Promise<{ postgres: string; mysql: string }> {
  const client = await pgClient(ctx.pgUrl);
  const { rows } = await (client as pg.Client).query('SHOW server_version');
  await closeRaw(client);
  const conn = await mysqlConnection(ctx.mysqlUrl);
  const [row] = (await rawQuery(conn, 'SELECT VERSION() AS v')) as { v: string }[];
  await closeRaw(conn);
  return { postgres: String(rows[0]?.server_version), mysql: String(row?.v) };
}

function format(value: number | undefined, digits = 1): string {
  if (value === undefined || Number.isNaN(value)) return '';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(digits);
}

/** Whether the row meets the issue's target: ratio ≤ target for times, ≥ for rates (/s). */
function verdict(row: ResultRow): string {
  if (row.limit !== undefined) {
    const worst = row.max ?? row.median;
    return worst <= row.limit ? `≤ ${row.limit} ok` : `> ${row.limit} MISS`;
  }
  if (row.target === undefined || row.ratio === undefined) return '';
  if (higherIsBetter(row.unit)) {
    return row.ratio >= row.target ? `≥ ${row.target} ok` : `< ${row.target} MISS`;
  }
  return row.ratio <= row.target ? `≤ ${row.target} ok` : `> ${row.target} MISS`;
}

/** A Markdown table, so that it can be pasted into the README as it is. */
export function table(rows: readonly ResultRow[]): string {
  const header = [
    'question',
    'contender',
    'metric',
    'median',
    'min–max',
    'p99',
    'unit',
    'ratio',
    'target',
  ];
  const lines = rows.map((row) => [
    row.question,
    row.contender,
    row.metric,
    format(row.median),
    row.min === undefined || row.max === undefined ? '' : `${format(row.min)}–${format(row.max)}`,
    format(row.p99),
    row.unit,
    row.ratio === undefined ? '' : `${row.ratio.toFixed(2)}×`,
    verdict(row),
  ]);
  const out = [header, header.map(() => '---'), ...lines].map(
    (cells) => `| ${cells.join(' | ')} |`,
  );
  return out.join('\n');
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const questions = selectedQuestions(process.argv);
  const ctx = await createContext(quick);
  const started = performance.now();
  const versions = await serverVersions(ctx);
  for (const name of questions) {
    const questionStarted = performance.now();
    await QUESTIONS[name]!(ctx);
    ctx.log(`${name}: ${((performance.now() - questionStarted) / 1000).toFixed(0)} s`);
  }
  const seconds = (performance.now() - started) / 1000;
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    library: librarySource,
    platform: `${os.type()} ${os.release()}`,
    ...versions,
  };
  process.stdout.write(`${table(ctx.rows)}\n\n`);
  process.stdout.write(
    `ratio = contender ÷ baseline (time: lower is better; /s: higher is better). ` +
      `${quick ? 'Quick run' : 'Full run'} in ${seconds.toFixed(0)} s on ${machine.cpus} cores, ` +
      `${machine.memoryGiB} GiB, Node ${machine.node}, PostgreSQL ${machine.postgres}, ` +
      `MariaDB/MySQL ${machine.mysql}; library from ${librarySource}.\n`,
  );
  const results = new URL('./results/', import.meta.url);
  await mkdir(results, { recursive: true });
  const file = new URL('latest.json', results);
  await writeFile(
    file,
    `${JSON.stringify({ date: new Date().toISOString(), quick, questions, seconds, machine, rows: ctx.rows }, null, 2)}\n`,
  );
  process.stderr.write('Wrote benchmarks/results/latest.json\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
