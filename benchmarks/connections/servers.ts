/** The servers counted and the knex instances tracked by the lock-connections question. */
import type { Socket } from 'node:net';
import { Redis } from 'ioredis';
import knexFactory, { type Knex } from 'knex';
import type mysql from 'mysql2';
import type pg from 'pg';
import { closeLockConnections } from '../library.js';
import { closeRaw, mysqlConnection, pgClient, rawQuery } from '../runner.js';

export const QUESTION = '7. lock connections';
export const WORKERS = 16;
export const POOL_MAX = 10;
export const WORK_POOL_MAX = 4;
export const ACQUIRE_CONNECTION_TIMEOUT = 2_000;
export const SAMPLE_EVERY_MS = 20;

export const MULTIPLEXED = 'knex-dlock, multiplexed (default)';
export const POOL = "knex-dlock, connection: 'pool'";
export const REDLOCK = 'redlock (Redis, retry every 10 ms)';

export type Client = 'pg' | 'mysql2';

/** A server whose connections are counted by their client ports. */
export interface Server {
  /** The client port of every TCP connection the server has now. */
  clientPorts(): Promise<number[]>;
  close(): Promise<void>;
}

export interface Contender {
  readonly name: string;
  readonly server: Server;
  /** The client side of the contender's connections, to pick them out on the server. */
  readonly sockets: Set<Socket>;
  cycle(worker: number): Promise<void>;
  /** Lock connections by lockConnectionStats(), for the multiplexed mode. */
  lockConnections?(): number;
}

export interface Round {
  readonly ops: number;
  /** Cycles completed by each worker. */
  readonly perWorker: readonly number[];
  readonly failures: number;
  readonly seconds: number;
}

/** What was seen of one contender over all its rounds, warm-up included. */
export interface Seen {
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

export const portOf = (address: string): number =>
  Number(address.slice(address.lastIndexOf(':') + 1));

export async function pgServer(url: string): Promise<Server> {
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

export async function mysqlServer(url: string): Promise<Server> {
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

export function redisServer(url: string): Server {
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
export function socketOf(raw: unknown): Socket | undefined {
  const connection = raw as { stream?: Socket; connection?: { stream?: Socket } };
  return connection.connection?.stream ?? connection.stream;
}

/**
 * A knex instance whose every connection is recorded: its pool's, and the lock connections
 * the library opens through the same `client.acquireRawConnection`.
 */
export function trackedKnex(
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

export async function closeKnex(knex: Knex): Promise<void> {
  await closeLockConnections(knex);
  await knex.destroy();
}
