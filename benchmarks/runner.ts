/**
 * Shared machinery for the benchmarks: interleaved timing, medians and percentiles, the result
 * rows that become the printed table and the JSON file, and connection helpers.
 */
import mysql from 'mysql2';
import pg from 'pg';
import { databaseUrls } from '../test/support/databases.js';

/** One line of the results table. */
export interface ResultRow {
  readonly question: string;
  readonly contender: string;
  readonly metric: string;
  readonly unit: string;
  readonly median: number;
  /** The spread of the samples behind `median`: the lowest and the highest. */
  readonly min?: number;
  readonly max?: number;
  readonly p99?: number;
  /** `median` divided by the baseline's median (lower is better unless the unit says /s). */
  readonly ratio?: number;
  readonly baseline?: string;
  /**
   * The target for `ratio`, when it sets one: an upper bound for times, a lower bound
   * when the unit is a rate (`/s`).
   */
  readonly target?: number;
  /** The upper bound for the value itself (its worst sample, `max`), when it sets one. */
  readonly limit?: number;
  readonly samples?: number;
  readonly extra?: Record<string, unknown>;
}

export interface BenchContext {
  readonly quick: boolean;
  readonly pgUrl: string;
  readonly mysqlUrl: string;
  readonly rows: ResultRow[];
  /** Progress on stderr, so that stdout stays the table. */
  log(message: string): void;
}

export interface Contender {
  readonly name: string;
  /** Runs `n` operations back to back. */
  batch(n: number): Promise<void>;
}

/**
 * Microseconds of process CPU (user + system, steadier than wall time on a loaded machine) per
 * operation of `contender`, over `n` operations.
 */
export async function cpuPerOperation(contender: Contender, n: number): Promise<number> {
  const before = process.cpuUsage();
  await contender.batch(n);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** The nearest-rank percentile. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/**
 * Times batches of each contender in turn (A B C, then B C A, ...), so that drift and noise
 * land on all of them alike. Returns the milliseconds per operation of every batch, by name.
 */
export async function interleave(
  contenders: readonly Contender[],
  options: { rounds: number; perBatch: number; warmup?: number },
): Promise<Map<string, number[]>> {
  const perOp = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  for (const contender of contenders) await contender.batch(options.warmup ?? options.perBatch);
  for (let round = 0; round < options.rounds; round += 1) {
    for (let i = 0; i < contenders.length; i += 1) {
      const contender = contenders[(round + i) % contenders.length]!;
      const started = performance.now();
      await contender.batch(options.perBatch);
      perOp.get(contender.name)!.push((performance.now() - started) / options.perBatch);
    }
  }
  return perOp;
}

/**
 * The median of per-round ratios `contender ÷ baseline`: both ran back to back in each round,
 * so load from outside the benchmark cancels out better than in a ratio of medians.
 */
export function pairedRatio(contender: readonly number[], baseline: readonly number[]): number {
  return median(contender.map((value, round) => value / baseline[round]!));
}

/** Whether a larger value is the better one: rates (`/s`) are, times are not. */
export function higherIsBetter(unit: string): boolean {
  return unit.endsWith('/s');
}

/** The median of `values` with the lowest and the highest, for a row's median and spread. */
export function spread(values: readonly number[]): { median: number; min: number; max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** A row of CPU per operation (µs, from {@link cpuPerOperation}) with its spread. */
export function cpuRow(question: string, contender: string, values: readonly number[]): ResultRow {
  return { question, contender, metric: 'CPU per cycle', unit: 'µs', ...spread(values) };
}

/**
 * Of several contenders timed side by side, the fastest: the one whose per-round times, paired
 * with the first contender's, have the lowest median ratio (so that the choice agrees with the
 * paired ratios printed). The baseline when the question says "the faster of".
 */
export function fastest(timings: Map<string, number[]>, names: readonly string[]): string {
  const first = timings.get(names[0]!)!;
  const ratioToFirst = (name: string) => pairedRatio(timings.get(name)!, first);
  let best = names[0]!;
  for (const name of names) if (ratioToFirst(name) < ratioToFirst(best)) best = name;
  return best;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function pgClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

export async function mysqlConnection(url: string): Promise<mysql.Connection> {
  const conn = mysql.createConnection({ uri: url });
  await conn.promise().query('SELECT 1');
  return conn;
}

/** Runs one statement on a raw driver connection (pg client or callback mysql2 connection). */
export function rawQuery(
  connection: object,
  sql: string,
  params?: readonly unknown[],
): Promise<unknown> {
  if ('processID' in connection) {
    const client = connection as unknown as pg.Client;
    return params ? client.query(sql, [...params]) : client.query(sql);
  }
  const conn = connection as mysql.Connection;
  return new Promise((resolve, reject) =>
    conn.query(sql, params ? [...params] : [], (err, rows) => (err ? reject(err) : resolve(rows))),
  );
}

/** Closes a connection opened by {@link pgClient} or {@link mysqlConnection}. */
export function closeRaw(connection: object): Promise<void> {
  if ('processID' in connection) return (connection as unknown as pg.Client).end();
  return (connection as mysql.Connection).promise().end();
}

export async function createContext(quick: boolean): Promise<BenchContext> {
  const urls = await databaseUrls();
  return {
    quick,
    pgUrl: urls.pg,
    mysqlUrl: urls.mysql,
    rows: [],
    log: (message) => process.stderr.write(`${message}\n`),
  };
}

/** The Redis that redlock, the peer, runs on. */
export const REDIS_URL = process.env.DLOCK_REDIS_URL || 'redis://127.0.0.1:6379';

/** A key per benchmark run, so that concurrent runs never contend with each other. */
let keyCounter = 0;
export function benchKey(label: string): string {
  keyCounter += 1;
  return `dlock-bench:${label}:${process.pid}:${keyCounter}`;
}
