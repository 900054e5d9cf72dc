/**
 * Question 5: through a pool or a knex instance (the library in its default mode, a new lock
 * object per cycle as applications write it), how many acquire + release cycles per second,
 * next to redlock on the local Redis:
 *
 * - sequential: one worker loops acquire → release; `advisory-lock` (PostgreSQL, a new
 *   connection per lock) runs beside them;
 * - 16 workers: concurrent loops, each worker on a key of its own, so nothing contends.
 *
 * All contenders run interleaved in the same rounds; the ratio is the median of per-round
 * ratios library ÷ redlock in cycles per second (≥ 1: the library is at least as fast).
 */
import advisoryLockCjs from 'advisory-lock';
import { Redis } from 'ioredis';
import knexFactory, { type Knex } from 'knex';
import mysql from 'mysql2';
import pg from 'pg';
import Redlock from 'redlock';
import { closeLockConnections, createLock } from './library.js';
import {
  benchKey,
  interleave,
  pairedRatio,
  spread,
  type BenchContext,
  type Contender,
  type ResultRow,
  REDIS_URL,
} from './runner.js';

const QUESTION = '5. peers';
const WORKERS = 16;
const POOL_MAX = 10;
/** Sequential cycles per second through a pool or knex ≥ redlock's. */
const TARGET_VS_REDLOCK = 1;
/** advisory-lock is CommonJS with an `exports.default`, which an ESM default import wraps. */
const advisoryLock = advisoryLockCjs.default;
const REDLOCK = 'redlock (Redis)';

/** One acquire → release of `worker`'s key. */
interface Peer {
  readonly name: string;
  readonly library: boolean;
  readonly sequentialOnly?: boolean;
  cycle(worker: number): Promise<void>;
}

interface Targets {
  readonly peers: Peer[];
  close(): Promise<void>;
}

/** A cycle of the library on `target`, with a fresh lock object each time, on worker's own key. */
function libraryPeer(name: string, target: object): Peer {
  const keys = Array.from({ length: WORKERS }, () => benchKey('peers'));
  return {
    name: `knex-dlock on ${name}`,
    library: true,
    async cycle(worker) {
      const lock = createLock(target, keys[worker]!);
      if (!(await lock.acquire())) throw new Error('acquire() returned false');
      await lock.release();
    },
  };
}

function openTargets(ctx: BenchContext): Targets {
  const knexPg: Knex = knexFactory({
    client: 'pg',
    connection: ctx.pgUrl,
    pool: { min: 0, max: POOL_MAX },
  });
  const knexMysql: Knex = knexFactory({
    client: 'mysql2',
    connection: ctx.mysqlUrl,
    pool: { min: 0, max: POOL_MAX },
  });
  const pgPool = new pg.Pool({ connectionString: ctx.pgUrl, max: POOL_MAX });
  const mysqlPool = mysql.createPool({ uri: ctx.mysqlUrl, connectionLimit: POOL_MAX });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  // Every worker has a key of its own: nothing contends, so nothing needs a retry.
  const redlock = new Redlock([redis], { retryCount: 0 });
  const redisKeys = Array.from({ length: WORKERS }, () => benchKey('peers-redis'));
  const mutex = advisoryLock(ctx.pgUrl)(benchKey('advisory-lock'));
  const peers: Peer[] = [
    libraryPeer('knex (pg)', knexPg),
    libraryPeer('pg.Pool', pgPool),
    libraryPeer('knex (mysql2)', knexMysql),
    libraryPeer('mysql2 pool', mysqlPool),
    {
      name: 'advisory-lock (pg, connection per lock)',
      library: false,
      sequentialOnly: true,
      async cycle() {
        const unlock = await mutex.lock();
        await unlock();
      },
    },
    {
      name: REDLOCK,
      library: false,
      async cycle(worker) {
        const lock = await redlock.acquire([redisKeys[worker]!], 10_000);
        await lock.release();
      },
    },
  ];
  return {
    peers,
    async close() {
      for (const target of [knexPg, knexMysql, pgPool, mysqlPool]) {
        await closeLockConnections(target);
      }
      await knexPg.destroy();
      await knexMysql.destroy();
      await pgPool.end();
      await new Promise<void>((resolve) => mysqlPool.end(() => resolve()));
      await redis.quit();
    },
  };
}

/** `n` cycles by one worker. */
function sequential(peer: Peer): Contender {
  return {
    name: peer.name,
    async batch(n) {
      for (let i = 0; i < n; i += 1) await peer.cycle(0);
    },
  };
}

/** `n` cycles in all, shared by {@link WORKERS} concurrent workers (n is a multiple of it). */
function concurrent(peer: Peer): Contender {
  return {
    name: peer.name,
    async batch(n) {
      const each = Math.ceil(n / WORKERS);
      await Promise.all(
        Array.from({ length: WORKERS }, async (_, worker) => {
          for (let i = 0; i < each; i += 1) await peer.cycle(worker);
        }),
      );
    },
  };
}

/** Rows of cycles per second, the library's with its paired ratio to redlock. */
function rateRows(
  question: string,
  peers: readonly Peer[],
  timings: Map<string, number[]>,
  target?: number,
): ResultRow[] {
  const rates = (name: string) => timings.get(name)!.map((ms) => 1000 / ms);
  const redlock = rates(REDLOCK);
  return peers.map((peer) => {
    const values = rates(peer.name);
    const isBase = peer.name === REDLOCK;
    return {
      question,
      contender: isBase ? `${peer.name} (baseline)` : peer.name,
      metric: isBase ? 'cycles' : 'cycles, vs redlock',
      unit: '/s',
      ...spread(values),
      samples: values.length,
      ratio: pairedRatio(values, redlock),
      baseline: isBase ? undefined : REDLOCK,
      target: peer.library ? target : undefined,
    };
  });
}

export async function peers(ctx: BenchContext): Promise<void> {
  const rounds = ctx.quick ? 7 : 21;
  const targets = openTargets(ctx);
  try {
    const one = targets.peers;
    const question = `${QUESTION}: sequential acquire+release, one worker`;
    ctx.log(question);
    const perBatch = ctx.quick ? 30 : 100;
    const timings = await interleave(one.map(sequential), { rounds, perBatch, warmup: 20 });
    ctx.rows.push(...rateRows(question, one, timings, TARGET_VS_REDLOCK));

    const many = targets.peers.filter((peer) => !peer.sequentialOnly);
    const manyQuestion = `${QUESTION}: ${WORKERS} workers, own key each`;
    ctx.log(manyQuestion);
    const manyTimings = await interleave(many.map(concurrent), {
      rounds,
      perBatch: WORKERS * (ctx.quick ? 10 : 20),
      warmup: WORKERS * 5,
    });
    ctx.rows.push(...rateRows(manyQuestion, many, manyTimings));
  } finally {
    await targets.close();
  }
}
