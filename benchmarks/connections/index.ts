/**
 * Question 7, one file per scenario in this folder: where do the locks of a knex instance run, and what does it cost? 16 concurrent
 * workers loop acquire → release through one knex instance with an ordinary pool, in the
 * default `connection: 'multiplexed'` mode (a few lock connections of the library's own that
 * all locks share), with `connection: 'pool'` (a connection borrowed from knex's pool for each
 * lock), and with redlock on the local Redis (same workers, same keys pattern):
 *
 * - own key each: every worker locks a key of its own, so nothing contends;
 * - one key: all 16 block on the same key (redlock has no blocking acquire: it retries every
 *   10 ± 5 ms, far more often than its default 200 ± 100 ms);
 * - work inside the lock: every cycle runs `knex.raw('select 1')` while holding its own key,
 *   with knex's pool at 4 connections and `acquireConnectionTimeout` 2 s. On 'pool' the locks
 *   hold the pool's connections while their queries wait for one: the cycles fail when knex
 *   gives up, which bounds the run.
 *
 * The contenders run in fixed-duration rounds, interleaved (A B C, then B C A, ...), each with
 * its own knex instance. Cycles per second are the median of the rounds, with the lowest and
 * the highest; ratios are the median of per-round ratios (none where 'pool' completed no
 * cycle). Server connections are counted on the server (pg_stat_activity,
 * information_schema.PROCESSLIST, CLIENT LIST) every 20 ms: the peak of those from the
 * contender's own sockets (so that other clients of the same server do not count), minus those
 * it had before its first round (none), warm-up included. The JSON also has each round's rate,
 * the failures by error, and how evenly the workers got through (redlock's retries let a
 * releasing worker take the key straight back; knex-dlock's waiters queue).
 */
import { REDIS_URL, type BenchContext } from '../runner.js';
import { oneKey } from './one-key.js';
import { ownKeyEach } from './own-key.js';
import { mysqlServer, pgServer, redisServer } from './servers.js';
import { workInsideLock } from './work-inside-lock.js';

export async function connections(ctx: BenchContext): Promise<void> {
  const redisTarget = { server: redisServer(REDIS_URL), url: REDIS_URL };
  try {
    for (const client of ['pg', 'mysql2'] as const) {
      const database = await (client === 'pg' ? pgServer(ctx.pgUrl) : mysqlServer(ctx.mysqlUrl));
      try {
        await ownKeyEach(ctx, client, database, redisTarget);
        await oneKey(ctx, client, database, redisTarget);
        await workInsideLock(ctx, client, database);
      } finally {
        await database.close();
      }
    }
  } finally {
    await redisTarget.server.close();
  }
}
