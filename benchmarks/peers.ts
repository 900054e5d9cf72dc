/**
 * Question 5: the same acquire + release loop with the peers: `advisory-lock` (PostgreSQL, a new
 * connection per lock) and `redlock` on the local Redis, beside knex-dlock on pools.
 */
import advisoryLockCjs from 'advisory-lock';
import { Redis } from 'ioredis';
import mysql from 'mysql2';
import pg from 'pg';
import Redlock from 'redlock';
import { createLock } from './library.js';
import { benchKey, interleave, median, type BenchContext, type Contender } from './runner.js';

const QUESTION = '5. peers: acquire+release';
/** advisory-lock is CommonJS with an `exports.default`, which an ESM default import wraps. */
const advisoryLock = advisoryLockCjs.default;
const REDIS_URL = process.env.DLOCK_REDIS_URL || 'redis://127.0.0.1:6379';

export async function peers(ctx: BenchContext): Promise<void> {
  ctx.log(`${QUESTION}`);
  const pgPool = new pg.Pool({ connectionString: ctx.pgUrl, max: 2 });
  const mysqlPool = mysql.createPool({ uri: ctx.mysqlUrl, connectionLimit: 2 });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const redlock = new Redlock([redis], { retryCount: 0 });
  const mutex = advisoryLock(ctx.pgUrl)(benchKey('advisory-lock'));
  const pgKey = benchKey('peers-pg');
  const mysqlKey = benchKey('peers-mysql');
  const redisKey = benchKey('peers-redis');
  const loop = (name: string, cycle: () => Promise<void>): Contender => ({
    name,
    async batch(n) {
      for (let i = 0; i < n; i += 1) await cycle();
    },
  });
  const contenders = [
    loop('knex-dlock on pg.Pool', async () => {
      const lock = createLock(pgPool, pgKey);
      await lock.acquire();
      await lock.release();
    }),
    loop('knex-dlock on mysql2 pool', async () => {
      const lock = createLock(mysqlPool, mysqlKey);
      await lock.acquire();
      await lock.release();
    }),
    loop('advisory-lock (pg, connection per lock)', async () => {
      const unlock = await mutex.lock();
      await unlock();
    }),
    loop('redlock (Redis)', async () => {
      const lock = await redlock.acquire([redisKey], 10_000);
      await lock.release();
    }),
  ];
  try {
    const timings = await interleave(contenders, {
      rounds: ctx.quick ? 3 : 8,
      perBatch: ctx.quick ? 30 : 100,
      warmup: 10,
    });
    const baseline = contenders[0]!.name;
    const base = median(timings.get(baseline)!);
    for (const [contender, values] of timings) {
      ctx.rows.push({
        question: QUESTION,
        contender,
        metric: 'cycles',
        unit: '/s',
        median: 1000 / median(values),
        samples: values.length,
        ratio: base / median(values),
        baseline: contender === baseline ? undefined : baseline,
      });
    }
  } finally {
    await pgPool.end();
    await new Promise<void>((resolve) => mysqlPool.end(() => resolve()));
    await redis.quit();
  }
}
