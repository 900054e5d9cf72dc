/** The acquire → release loop that the own-key and one-key scenarios share. */
import type { Socket } from 'node:net';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { createLock, lockConnectionStats } from '../library.js';
import { type BenchContext } from '../runner.js';
import { connectionRows, cyclesRow, interleaveRounds, warnFailures } from './rounds.js';
import {
  type Client,
  type Contender,
  MULTIPLEXED,
  POOL,
  POOL_MAX,
  QUESTION,
  REDLOCK,
  type Server,
  closeKnex,
  trackedKnex,
} from './servers.js';

/** Acquire → release with each worker on `keyOf(worker)`, for the three contenders. */
export async function lockLoop(
  ctx: BenchContext,
  client: Client,
  database: Server,
  redisTarget: { server: Server; url: string },
  label: string,
  keyOf: (name: string) => (worker: number) => string,
): Promise<void> {
  const question = `${QUESTION}: 16 workers, ${label} (${client})`;
  ctx.log(question);
  const url = client === 'pg' ? ctx.pgUrl : ctx.mysqlUrl;
  const multiplexed = trackedKnex(client, url, { pool: { min: 0, max: POOL_MAX } });
  const pooled = trackedKnex(client, url, { pool: { min: 0, max: POOL_MAX } });
  const redis = new Redis(redisTarget.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  const redisSockets = new Set<Socket>();
  redis.on('connect', () => {
    const socket = (redis as unknown as { stream?: Socket }).stream;
    if (socket) redisSockets.add(socket);
  });
  const redlock = new Redlock([redis], { retryCount: -1, retryDelay: 10, retryJitter: 5 });
  const multiplexedKey = keyOf('multiplexed');
  const pooledKey = keyOf('pool');
  const redisKey = keyOf('redlock');
  const contenders: Contender[] = [
    {
      name: MULTIPLEXED,
      server: database,
      sockets: multiplexed.sockets,
      async cycle(worker) {
        const lock = createLock(multiplexed.knex, multiplexedKey(worker));
        if (!(await lock.acquire())) throw new Error('acquire() returned false');
        await lock.release();
      },
      lockConnections: () => lockConnectionStats(multiplexed.knex).connections,
    },
    {
      name: POOL,
      server: database,
      sockets: pooled.sockets,
      async cycle(worker) {
        const lock = createLock(pooled.knex, pooledKey(worker), { connection: 'pool' });
        if (!(await lock.acquire())) throw new Error('acquire() returned false');
        await lock.release();
      },
    },
    {
      name: REDLOCK,
      server: redisTarget.server,
      sockets: redisSockets,
      async cycle(worker) {
        const lock = await redlock.acquire([redisKey(worker)], 10_000);
        await lock.release();
      },
    },
  ];
  try {
    const seen = await interleaveRounds(contenders, {
      rounds: ctx.quick ? 5 : 15,
      ms: ctx.quick ? 60 : 150,
      warmupMs: ctx.quick ? 60 : 150,
    });
    warnFailures(ctx, question, seen);
    const mux = seen.get(MULTIPLEXED)!;
    const pool = seen.get(POOL)!;
    const red = seen.get(REDLOCK)!;
    ctx.rows.push(
      cyclesRow(question, MULTIPLEXED, mux, "cycles, vs 'pool'", { name: POOL, seen: pool }),
      cyclesRow(question, MULTIPLEXED, mux, 'cycles, vs redlock', { name: REDLOCK, seen: red }),
      cyclesRow(question, POOL, pool, 'cycles'),
      cyclesRow(question, REDLOCK, red, 'cycles'),
      ...connectionRows(question, MULTIPLEXED, mux),
      ...connectionRows(question, POOL, pool),
      ...connectionRows(question, REDLOCK, red),
    );
  } finally {
    await closeKnex(multiplexed.knex);
    await closeKnex(pooled.knex);
    await redis.quit().catch(() => redis.disconnect());
  }
}
