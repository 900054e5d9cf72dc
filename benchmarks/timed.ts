/**
 * Question 2: what does an uncontended timed acquire (`timeout: 1000`) + release cost over the
 * raw driver's try-lock + unlock, the cheapest way to take a free lock?
 */
import { createLock } from './library.js';
import {
  benchKey,
  interleave,
  mysqlConnection,
  perOpRows,
  pgClient,
  rawQuery,
  type BenchContext,
  type Contender,
} from './runner.js';

const QUESTION = '2. timed acquire (1 s) + release';
const TARGET_RATIO = 1.15;

interface Setup {
  readonly name: string;
  open(ctx: BenchContext): Promise<{ connection: object; close(): Promise<void> }>;
  /** The raw try-lock and unlock for `key` as the database sees it. */
  raw(actualKey: bigint | string): { lock: [string, unknown[]]; unlock: [string, unknown[]] };
}

const SETUPS: readonly Setup[] = [
  {
    name: 'pg.Client',
    async open(ctx) {
      const client = await pgClient(ctx.pgUrl);
      return { connection: client, close: () => client.end() };
    },
    raw: (key) => ({
      lock: ['SELECT pg_try_advisory_lock($1)', [key]],
      unlock: ['SELECT pg_advisory_unlock($1)', [key]],
    }),
  },
  {
    name: 'mysql2 connection',
    async open(ctx) {
      const conn = await mysqlConnection(ctx.mysqlUrl);
      return { connection: conn, close: () => conn.promise().end() };
    },
    raw: (name) => ({
      lock: ['SELECT GET_LOCK(?, 0)', [name]],
      unlock: ['SELECT RELEASE_LOCK(?)', [name]],
    }),
  },
];

export async function timed(ctx: BenchContext): Promise<void> {
  const rounds = ctx.quick ? 7 : 25;
  const perBatch = ctx.quick ? 100 : 300;
  for (const setup of SETUPS) {
    ctx.log(`${QUESTION}: ${setup.name}`);
    const { connection, close } = await setup.open(ctx);
    try {
      const lock = createLock(connection, benchKey('timed'));
      const sql = setup.raw(lock.actualKey);
      const library: Contender = {
        name: `knex-dlock timed on ${setup.name}`,
        async batch(n) {
          for (let i = 0; i < n; i += 1) {
            if (!(await lock.acquire({ timeout: 1_000 }))) throw new Error('lock was busy');
            await lock.release();
          }
        },
      };
      const raw: Contender = {
        name: `raw try-lock on ${setup.name}`,
        async batch(n) {
          for (let i = 0; i < n; i += 1) {
            await rawQuery(connection, ...sql.lock);
            await rawQuery(connection, ...sql.unlock);
          }
        },
      };
      const timings = await interleave([library, raw], { rounds, perBatch });
      ctx.rows.push(...perOpRows(QUESTION, timings, raw.name, TARGET_RATIO));
    } finally {
      await close();
    }
  }
}
