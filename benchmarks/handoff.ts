/**
 * Question 3: under contention, how long from "the holder releases" to "the waiter holds"?
 * Compared with the raw driver's native blocking call, and with a try-lock polling loop that
 * sleeps 1 s between tries (how the seed and sqlalchemy-dlock wait). The waiter's connection is
 * watched at the wire: a wait is one round trip, and any other one while it waits (a poll) is
 * reported.
 */
import { countTraffic } from '../test/support/counting.js';
import { createLock, type BaseLock } from './library.js';
import {
  benchKey,
  closeRaw,
  median,
  mysqlConnection,
  percentile,
  pgClient,
  rawQuery,
  sleep,
  spread,
  type BenchContext,
  type ResultRow,
} from './runner.js';

const QUESTION = '3. handoff latency';
const TARGET_RATIO = 1.2;
/** Long enough for the waiter's statement to reach the server and start waiting there. */
const SETTLE_MS = 15;
const POLL_INTERVAL_MS = 1_000;
/** Round trips a waiter may make beyond its one wait statement while it waits. */
const ROUND_TRIPS_WHILE_WAITING = 0;

interface RawSql {
  lock: string;
  tryLock: string;
  unlock: string;
}

const PG_SQL: RawSql = {
  lock: 'SELECT pg_advisory_lock($1)',
  tryLock: 'SELECT pg_try_advisory_lock($1) AS ok',
  unlock: 'SELECT pg_advisory_unlock($1)',
};

const MYSQL_SQL: RawSql = {
  lock: 'SELECT GET_LOCK(?, 4294967295)',
  tryLock: 'SELECT GET_LOCK(?, 0) AS ok',
  unlock: 'SELECT RELEASE_LOCK(?)',
};

/** One handoff: `hold` then `wait` (not awaited), then `release`; returns ms until wait ends. */
async function handoff(
  hold: () => Promise<unknown>,
  wait: () => Promise<unknown>,
  release: () => Promise<unknown>,
  releaseAfterMs = SETTLE_MS,
): Promise<number> {
  await hold();
  let heldAt = 0;
  const waiting = wait().then(() => (heldAt = performance.now()));
  await sleep(releaseAfterMs);
  const releasedAt = performance.now();
  await release();
  await waiting;
  return heldAt - releasedAt;
}

function latencyRows(name: string, samples: Map<string, number[]>, baseline: string): ResultRow[] {
  const base = median(samples.get(baseline) ?? []);
  return [...samples].map(([contender, values]) => ({
    question: QUESTION,
    contender: `${contender} (${name})`,
    metric: 'release → held',
    unit: 'ms',
    median: median(values),
    p99: percentile(values, 99),
    samples: values.length,
    ratio: median(values) / base,
    baseline: contender === baseline ? undefined : `${baseline} (${name})`,
    target: contender === 'knex-dlock' ? TARGET_RATIO : undefined,
  }));
}

async function pollingWait(connection: object, key: unknown, sql: RawSql): Promise<void> {
  for (;;) {
    const result = await rawQuery(connection, sql.tryLock, [key]);
    const row = ('rows' in (result as object) ? (result as { rows: unknown[] }).rows : result) as {
      ok: unknown;
    }[];
    const ok = row[0]?.ok;
    if (ok === true || ok === 1 || ok === 1n) return;
    await sleep(POLL_INTERVAL_MS);
  }
}

export async function handoffLatency(ctx: BenchContext): Promise<void> {
  const samples = ctx.quick ? 20 : 100;
  const pollingSamples = ctx.quick ? 2 : 4;
  const setups = [
    { name: 'pg.Client', open: () => pgClient(ctx.pgUrl), sql: PG_SQL },
    { name: 'mysql2 connection', open: () => mysqlConnection(ctx.mysqlUrl), sql: MYSQL_SQL },
  ];
  for (const setup of setups) {
    ctx.log(`${QUESTION}: ${setup.name}`);
    const holderConn = await setup.open();
    const waiterConn = await setup.open();
    const counter = countTraffic(waiterConn);
    try {
      const key = benchKey('handoff');
      const holder: BaseLock = createLock(holderConn, key);
      const waiter: BaseLock = createLock(waiterConn, key);
      const actual = holder.actualKey;
      const raw = (conn: object, sql: string) => () => rawQuery(conn, sql, [actual]);
      /** Per library wait: the waiter's round trips beyond the wait statement itself. */
      const extraTrips: number[] = [];
      const watchedWait = async () => {
        const before = counter.snapshot();
        await waiter.acquire();
        extraTrips.push(counter.since(before).roundTrips - 1);
      };
      const contenders: [string, () => Promise<number>][] = [
        [
          'knex-dlock',
          async () => {
            const ms = await handoff(
              () => holder.acquire(),
              watchedWait,
              () => holder.release(),
            );
            await waiter.release();
            return ms;
          },
        ],
        [
          'raw blocking call',
          async () => {
            const ms = await handoff(
              raw(holderConn, setup.sql.lock),
              raw(waiterConn, setup.sql.lock),
              raw(holderConn, setup.sql.unlock),
            );
            await raw(waiterConn, setup.sql.unlock)();
            return ms;
          },
        ],
      ];
      const results = new Map<string, number[]>(contenders.map(([name]) => [name, []]));
      for (let i = 0; i < samples; i += 1) {
        const order = i % 2 === 0 ? contenders : [...contenders].reverse();
        for (const [name, sample] of order) results.get(name)!.push(await sample());
      }
      const polling: number[] = [];
      for (let i = 0; i < pollingSamples; i += 1) {
        // Released at a random point of the polling interval, as a real holder would.
        const releaseAfter = SETTLE_MS + Math.random() * POLL_INTERVAL_MS;
        polling.push(
          await handoff(
            raw(holderConn, setup.sql.lock),
            () => pollingWait(waiterConn, actual, setup.sql),
            raw(holderConn, setup.sql.unlock),
            releaseAfter,
          ),
        );
        await raw(waiterConn, setup.sql.unlock)();
      }
      results.set('try-lock polling every 1 s', polling);
      ctx.rows.push(...latencyRows(setup.name, results, 'raw blocking call'), {
        question: QUESTION,
        contender: `knex-dlock (${setup.name})`,
        metric: 'round trips while waiting',
        unit: '',
        ...spread(extraTrips),
        samples: extraTrips.length,
        limit: ROUND_TRIPS_WHILE_WAITING,
      });
    } finally {
      counter.detach();
      await Promise.all([closeRaw(holderConn), closeRaw(waiterConn)]);
    }
  }
}
