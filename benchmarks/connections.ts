/**
 * Question 7: where do the locks of a knex instance run, and what does it cost? 16 concurrent
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
import type { Socket } from 'node:net';
import { Redis } from 'ioredis';
import knexFactory, { type Knex } from 'knex';
import type mysql from 'mysql2';
import type pg from 'pg';
import Redlock from 'redlock';
import { closeLockConnections, createLock, lockConnectionStats, withLock } from './library.js';
import {
  benchKey,
  closeRaw,
  mysqlConnection,
  pairedRatio,
  pgClient,
  rawQuery,
  sleep,
  spread,
  type BenchContext,
  type ResultRow,
  REDIS_URL,
} from './runner.js';

const QUESTION = '7. lock connections';
const WORKERS = 16;
const POOL_MAX = 10;
const WORK_POOL_MAX = 4;
const ACQUIRE_CONNECTION_TIMEOUT = 2_000;
const SAMPLE_EVERY_MS = 20;

const MULTIPLEXED = 'knex-dlock, multiplexed (default)';
const POOL = "knex-dlock, connection: 'pool'";
const REDLOCK = 'redlock (Redis, retry every 10 ms)';

type Client = 'pg' | 'mysql2';

/** A server whose connections are counted by their client ports. */
interface Server {
  /** The client port of every TCP connection the server has now. */
  clientPorts(): Promise<number[]>;
  close(): Promise<void>;
}

interface Contender {
  readonly name: string;
  readonly server: Server;
  /** The client side of the contender's connections, to pick them out on the server. */
  readonly sockets: Set<Socket>;
  cycle(worker: number): Promise<void>;
  /** Lock connections by lockConnectionStats(), for the multiplexed mode. */
  lockConnections?(): number;
}

interface Round {
  readonly ops: number;
  /** Cycles completed by each worker. */
  readonly perWorker: readonly number[];
  readonly failures: number;
  readonly seconds: number;
}

/** What was seen of one contender over all its rounds, warm-up included. */
interface Seen {
  readonly rounds: Round[];
  /** Its connections on the server before its first round. */
  before: number;
  peakServer: number;
  peakLock: number;
  /** All TCP connections of the server, other clients' included. */
  serverTotalBefore: number;
  serverTotalPeak: number;
  readonly errors: Map<string, number>;
}

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

async function pgServer(url: string): Promise<Server> {
  const client: pg.Client = await pgClient(url);
  return {
    async clientPorts() {
      const { rows } = await client.query<{ client_port: number }>(
        'SELECT client_port FROM pg_stat_activity WHERE client_port IS NOT NULL',
      );
      return rows.map((row) => row.client_port);
    },
    close: () => closeRaw(client),
  };
}

async function mysqlServer(url: string): Promise<Server> {
  const conn: mysql.Connection = await mysqlConnection(url);
  return {
    async clientPorts() {
      const rows = (await rawQuery(
        conn,
        "SELECT HOST AS host FROM information_schema.PROCESSLIST WHERE HOST LIKE '%:%'",
      )) as { host: string }[];
      return rows.map((row) => portOf(row.host));
    },
    close: () => closeRaw(conn),
  };
}

function redisServer(url: string): Server {
  const monitor = new Redis(url, { maxRetriesPerRequest: 1 });
  return {
    async clientPorts() {
      const list = (await monitor.client('LIST')) as string;
      return [...list.matchAll(/\baddr=(\S+)/g)].map((match) => portOf(match[1]!));
    },
    close: async () => void (await monitor.quit()),
  };
}

/** The socket of a raw pg client or mysql2 connection. */
function socketOf(raw: unknown): Socket | undefined {
  const connection = raw as { stream?: Socket; connection?: { stream?: Socket } };
  return connection.connection?.stream ?? connection.stream;
}

/**
 * A knex instance whose every connection is recorded: its pool's, and the lock connections
 * the library opens through the same `client.acquireRawConnection`.
 */
function trackedKnex(
  client: Client,
  url: string,
  config: Partial<Knex.Config>,
): { knex: Knex; sockets: Set<Socket> } {
  const knex = knexFactory({ client, connection: url, ...config });
  const sockets = new Set<Socket>();
  const knexClient = knex.client as { acquireRawConnection(): Promise<unknown> };
  const open = knexClient.acquireRawConnection.bind(knexClient);
  knexClient.acquireRawConnection = async () => {
    const raw = await open();
    const socket = socketOf(raw);
    if (socket) sockets.add(socket);
    return raw;
  };
  return { knex, sockets };
}

async function closeKnex(knex: Knex): Promise<void> {
  await closeLockConnections(knex);
  await knex.destroy();
}

function emptySeen(): Seen {
  return {
    rounds: [],
    before: 0,
    peakServer: 0,
    peakLock: 0,
    serverTotalBefore: 0,
    serverTotalPeak: 0,
    errors: new Map(),
  };
}

/** How many of the server's connections are the contender's, and how many there are. */
async function count(contender: Contender): Promise<{ own: number; total: number }> {
  const ports = await contender.server.clientPorts();
  const own = new Set<number>();
  for (const socket of contender.sockets) {
    if (socket.destroyed) contender.sockets.delete(socket);
    else if (socket.localPort !== undefined) own.add(socket.localPort);
  }
  return { own: ports.filter((port) => own.has(port)).length, total: ports.length };
}

async function sample(contender: Contender, seen: Seen): Promise<void> {
  const { own, total } = await count(contender);
  seen.peakServer = Math.max(seen.peakServer, own - seen.before);
  seen.serverTotalPeak = Math.max(seen.serverTotalPeak, total);
  if (contender.lockConnections) {
    seen.peakLock = Math.max(seen.peakLock, contender.lockConnections());
  }
}

function errorKind(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? ` (cause: ${err.cause.name})` : '';
  return `${err.name}${typeof code === 'string' ? ` ${code}` : ''}${cause}`;
}

/**
 * All workers loop the contender's cycle until `ms` have passed, then finish the cycle they
 * are in; the round lasts until the last one has. Its connections are sampled meanwhile.
 */
async function runRound(contender: Contender, ms: number, seen: Seen): Promise<Round> {
  let running = true;
  let samplingError: unknown;
  const sampler = (async () => {
    try {
      while (running) {
        await sample(contender, seen);
        await sleep(SAMPLE_EVERY_MS);
      }
    } catch (err) {
      samplingError = err;
    }
  })();
  let ops = 0;
  let failures = 0;
  const perWorker = Array.from({ length: WORKERS }, () => 0);
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, worker) => {
      while (performance.now() < deadline) {
        try {
          await contender.cycle(worker);
          ops += 1;
          perWorker[worker]! += 1;
        } catch (err) {
          failures += 1;
          const kind = errorKind(err);
          seen.errors.set(kind, (seen.errors.get(kind) ?? 0) + 1);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  running = false;
  await sampler;
  if (samplingError !== undefined) throw samplingError;
  return { ops, perWorker, failures, seconds };
}

/** A warm-up round of each (not timed), then `rounds` rounds of each, interleaved. */
async function interleaveRounds(
  contenders: readonly Contender[],
  options: { rounds: number; ms: number; warmupMs: number },
): Promise<Map<string, Seen>> {
  const seen = new Map<string, Seen>(contenders.map((c) => [c.name, emptySeen()]));
  for (const contender of contenders) {
    const mine = seen.get(contender.name)!;
    const { own, total } = await count(contender);
    mine.before = own;
    mine.serverTotalBefore = total;
  }
  if (options.warmupMs > 0) {
    for (const contender of contenders) {
      await runRound(contender, options.warmupMs, seen.get(contender.name)!);
    }
  }
  for (let round = 0; round < options.rounds; round += 1) {
    for (let i = 0; i < contenders.length; i += 1) {
      const contender = contenders[(round + i) % contenders.length]!;
      const mine = seen.get(contender.name)!;
      mine.rounds.push(await runRound(contender, options.ms, mine));
    }
  }
  return seen;
}

const rates = (seen: Seen): number[] => seen.rounds.map((r) => r.ops / r.seconds);

/** The median of per-round ratios, or undefined when the baseline completed nothing. */
function ratioOf(contender: Seen, baseline: Seen): number | undefined {
  const ratio = pairedRatio(rates(contender), rates(baseline));
  return Number.isFinite(ratio) ? ratio : undefined;
}

function details(seen: Seen): Record<string, unknown> {
  const perWorker = Array.from({ length: WORKERS }, (_, worker) =>
    seen.rounds.reduce((sum, r) => sum + r.perWorker[worker]!, 0),
  );
  return {
    cyclesPerSecondByRound: rates(seen).map((rate) => Math.round(rate)),
    cycles: seen.rounds.reduce((sum, r) => sum + r.ops, 0),
    // How evenly the workers got through: the least and the most cycles one of them completed.
    cyclesPerWorker: { min: Math.min(...perWorker), max: Math.max(...perWorker) },
    failures: seen.rounds.reduce((sum, r) => sum + r.failures, 0),
    errors: Object.fromEntries(seen.errors),
    serverConnectionsBefore: seen.before,
    serverTotalBefore: seen.serverTotalBefore,
    serverTotalPeak: seen.serverTotalPeak,
  };
}

function cyclesRow(
  question: string,
  contender: string,
  seen: Seen,
  metric: string,
  baseline?: { name: string; seen: Seen },
): ResultRow {
  return {
    question,
    contender,
    metric,
    unit: '/s',
    ...spread(rates(seen)),
    samples: seen.rounds.length,
    ratio: baseline ? ratioOf(seen, baseline.seen) : 1,
    baseline: baseline?.name,
    extra: details(seen),
  };
}

function connectionRows(question: string, contender: string, seen: Seen): ResultRow[] {
  const rows: ResultRow[] = [
    {
      question,
      contender,
      metric: 'server connections (peak)',
      unit: '',
      median: seen.peakServer,
    },
  ];
  if (seen.peakLock > 0) {
    rows.push({
      question,
      contender,
      metric: 'lock connections (peak, stats)',
      unit: '',
      median: seen.peakLock,
    });
  }
  return rows;
}

function warnFailures(ctx: BenchContext, question: string, seen: Map<string, Seen>): void {
  for (const [name, mine] of seen) {
    const failures = mine.rounds.reduce((sum, r) => sum + r.failures, 0);
    if (failures > 0) {
      ctx.log(`  ${question}, ${name}: ${failures} failed cycles: ${[...mine.errors.keys()]}`);
    }
  }
}

/** Acquire → release with each worker on `keyOf(worker)`, for the three contenders. */
async function lockLoop(
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

/** `withLock(knex, key, () => knex.raw('select 1'))` on a pool of 4, multiplexed against 'pool'. */
async function workInsideLock(ctx: BenchContext, client: Client, database: Server): Promise<void> {
  const question = `${QUESTION}: 16 workers, select 1 inside the lock, pool max ${WORK_POOL_MAX} (${client})`;
  ctx.log(question);
  const url = client === 'pg' ? ctx.pgUrl : ctx.mysqlUrl;
  const config: Partial<Knex.Config> = {
    pool: { min: 0, max: WORK_POOL_MAX },
    acquireConnectionTimeout: ACQUIRE_CONNECTION_TIMEOUT,
    // knex warns with a stack trace for every connection it could not get: they are counted.
    log: { warn: () => undefined },
  };
  const multiplexed = trackedKnex(client, url, config);
  const pooled = trackedKnex(client, url, config);
  const keys = (name: string) => Array.from({ length: WORKERS }, () => benchKey(`work-${name}`));
  const multiplexedKeys = keys('multiplexed');
  const pooledKeys = keys('pool');
  const contenders: Contender[] = [
    {
      name: MULTIPLEXED,
      server: database,
      sockets: multiplexed.sockets,
      async cycle(worker) {
        const { knex } = multiplexed;
        await withLock(knex, multiplexedKeys[worker]!, () => knex.raw('select 1'));
      },
      lockConnections: () => lockConnectionStats(multiplexed.knex).connections,
    },
    {
      name: POOL,
      server: database,
      sockets: pooled.sockets,
      async cycle(worker) {
        const { knex } = pooled;
        await withLock(knex, pooledKeys[worker]!, () => knex.raw('select 1'), {
          connection: 'pool',
        });
      },
    },
  ];
  try {
    // No warm-up: a round of 'pool' lasts until knex gives up on its connections (2 s).
    const seen = await interleaveRounds(contenders, {
      rounds: ctx.quick ? 1 : 3,
      ms: 500,
      warmupMs: 0,
    });
    const mux = seen.get(MULTIPLEXED)!;
    const pool = seen.get(POOL)!;
    const failedShare = (mine: Seen) =>
      spread(mine.rounds.map((r) => (100 * r.failures) / Math.max(1, r.ops + r.failures)));
    for (const [name, mine] of seen) {
      const failures = mine.rounds.reduce((sum, r) => sum + r.failures, 0);
      const seconds = mine.rounds.reduce((sum, r) => sum + r.seconds, 0);
      ctx.log(`  ${name}: ${failures} failed cycles in ${seconds.toFixed(1)} s`);
    }
    ctx.rows.push(
      cyclesRow(question, MULTIPLEXED, mux, "cycles, vs 'pool'", { name: POOL, seen: pool }),
      cyclesRow(question, POOL, pool, 'cycles'),
      {
        question,
        contender: MULTIPLEXED,
        metric: 'failed cycles',
        unit: '%',
        ...failedShare(mux),
        samples: mux.rounds.length,
      },
      {
        question,
        contender: POOL,
        metric: 'failed cycles',
        unit: '%',
        ...failedShare(pool),
        samples: pool.rounds.length,
      },
      ...connectionRows(question, MULTIPLEXED, mux),
      ...connectionRows(question, POOL, pool),
    );
  } finally {
    await closeKnex(multiplexed.knex);
    await closeKnex(pooled.knex);
  }
}

export async function connections(ctx: BenchContext): Promise<void> {
  const redisTarget = { server: redisServer(REDIS_URL), url: REDIS_URL };
  try {
    for (const client of ['pg', 'mysql2'] as const) {
      const database = await (client === 'pg' ? pgServer(ctx.pgUrl) : mysqlServer(ctx.mysqlUrl));
      try {
        await lockLoop(ctx, client, database, redisTarget, 'own key each', (name) => {
          const keys = Array.from({ length: WORKERS }, () => benchKey(`own-${name}`));
          return (worker) => keys[worker]!;
        });
        await lockLoop(ctx, client, database, redisTarget, 'one key', (name) => {
          const key = benchKey(`one-${name}`);
          return () => key;
        });
        await workInsideLock(ctx, client, database);
      } finally {
        await database.close();
      }
    }
  } finally {
    await redisTarget.server.close();
  }
}
