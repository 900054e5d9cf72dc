import type {
  ConnectionLease,
  ConnectionSettings,
  Driver,
  Row,
  SiblingSession,
  SqlSession,
} from './types.js';
import type { ConnectionEmitter } from './connection-events.js';
import {
  CALLER_OWNED,
  leaseConnection,
  ownConnection,
  unwrapped,
  type GiveBack,
  type SessionWrapper,
  type SocketLike,
} from './lease.js';
import { perConnection } from './per-connection.js';
import { runBefore } from './run-before.js';

type QueryCallback = (err: Error | null, rows?: unknown) => void;

/** The parts of a callback-style mysql2 (or mysql) connection the library uses. */
export interface MysqlConnectionLike extends ConnectionEmitter {
  query(sql: string, values: unknown[], callback: QueryCallback): unknown;
  readonly threadId: number | null;
  readonly config: object;
  release?(): void;
  destroy(): void;
  connect(callback: (err?: Error | null) => void): void;
  ping(callback: (err?: Error | null) => void): void;
  end(callback?: (err?: Error | null) => void): unknown;
  _handshakePacket?: { serverVersion?: string } | null;
  /** mysql2's socket. */
  readonly stream?: { once(event: 'close', listener: () => void): unknown; destroy(): void };
  /** The protocol state of a connection of the older mysql driver (mysqljs); mysql2 has none. */
  _protocol?: MysqljsProtocol;
}

/** What the library reads of a mysqljs connection's protocol. */
interface MysqljsProtocol {
  _handshakeInitializationPacket?: { serverVersion?: string } | null;
  _quitSequence?: unknown;
  _ended?: boolean;
  end?(): void;
}

/** The parts of a callback-style mysql2 pool the library uses. */
export interface MysqlPoolLike {
  getConnection(callback: (err: Error | null, connection: MysqlConnectionLike) => void): void;
  readonly config: { readonly connectionConfig: object };
}

/** The promise wrappers of mysql2/promise keep the callback object as a property. */
interface PromiseWrapper {
  readonly connection?: unknown;
  readonly pool?: unknown;
}

export function isMysqlConnection(target: unknown): target is MysqlConnectionLike {
  const t = target as Partial<MysqlConnectionLike> | null;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.query === 'function' &&
    typeof t.destroy === 'function' &&
    'threadId' in t &&
    typeof t.config === 'object'
  );
}

export function isMysqlPool(target: unknown): target is MysqlPoolLike {
  const t = target as Partial<MysqlPoolLike> | null;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.getConnection === 'function' &&
    typeof t.config?.connectionConfig === 'object'
  );
}

/** The callback-style object behind a mysql2/promise connection or pool, if `target` is one. */
export function unwrapMysqlPromise(target: unknown): unknown {
  if (typeof target !== 'object' || target === null) return undefined;
  const { connection, pool } = target as PromiseWrapper;
  if (isMysqlConnection(connection)) return connection;
  if (isMysqlPool(pool)) return pool;
  return undefined;
}

/** The server's version string from the handshake: mysql2 and mysqljs each keep it their way. */
function handshakeVersion(connection: MysqlConnectionLike): string | undefined {
  const version =
    connection._handshakePacket?.serverVersion ??
    connection._protocol?._handshakeInitializationPacket?.serverVersion;
  return typeof version === 'string' ? version : undefined;
}

/** The statements of each mysql2 connection still waiting for their answer. */
const unanswered = new WeakMap<MysqlConnectionLike, Set<(err: Error) => void>>();

/**
 * Where the statements of `connection` wait for their answer: mysql2 never calls them back once
 * its socket is destroyed (as a connection cut short by a silent fault is), so they fail when
 * it closes. mysqljs fails them itself.
 */
function unansweredOf(connection: MysqlConnectionLike): Set<(err: Error) => void> | undefined {
  let waiting = unanswered.get(connection);
  if (!waiting && connection.stream) {
    const created = new Set<(err: Error) => void>();
    waiting = created;
    unanswered.set(connection, created);
    connection.stream.once('close', () => {
      const err = new Error('The connection closed before the server answered.');
      for (const fail of [...created]) fail(err);
    });
  }
  return waiting;
}

/** Runs `sql` on a callback-style connection and resolves its rows (or its OK packet's row). */
function queryOn(
  connection: MysqlConnectionLike,
  sql: string,
  params?: readonly unknown[],
): Promise<Row[][]> {
  const waiting = unansweredOf(connection);
  return new Promise<Row[][]>((resolve, reject) => {
    waiting?.add(reject);
    connection.query(sql, (params ?? []) as unknown[], (err, rows) => {
      waiting?.delete(reject);
      if (err) reject(err);
      else resolve([Array.isArray(rows) ? (rows as Row[]) : statusRows(rows)]);
    });
  });
}

/** Runs statements on one callback-style connection, which mysql2 sends in call order. */
class MysqlSession implements SqlSession {
  readonly memo = new Map<symbol, unknown>();

  constructor(readonly connection: MysqlConnectionLike) {}

  get serverId(): number | undefined {
    return this.connection.threadId ?? undefined;
  }

  /** Known once the handshake is done. */
  get serverVersion(): string | undefined {
    return handshakeVersion(this.connection);
  }

  query(sql: string, params?: readonly unknown[]): Promise<Row[][]> {
    return queryOn(this.connection, sql, params);
  }

  inTransaction(): boolean {
    return false;
  }

  async openSibling(): Promise<SiblingSession> {
    const sibling = await openConnection(this.connection.config, this.connection);
    return {
      query: (sql, params) => queryOn(sibling, sql, params),
      close: async () => sibling.destroy(),
    };
  }

  readonly ping = (): Promise<void> =>
    new Promise<void>((resolve, reject) =>
      this.connection.ping((err) => (err ? reject(err) : resolve())),
    );
}

/**
 * What a statement without a result set reports in its OK packet, as one row: the affected
 * rows, the insert id (which `LAST_INSERT_ID(expr)` sets) and the server's status flags.
 */
function statusRows(status: unknown): Row[] {
  if (typeof status !== 'object' || status === null) return [];
  const { affectedRows, insertId, serverStatus } = status as Row;
  return [{ affectedRows, insertId, serverStatus }];
}

/** The session of a connection; one per connection, as it keeps no state of a lease. */
const mysqlSession: (connection: MysqlConnectionLike) => SqlSession = perConnection(
  (connection: MysqlConnectionLike) => new MysqlSession(connection),
);

type ConnectionClass = new (options: { config: object }) => MysqlConnectionLike;

/**
 * Opens a connection outside any pool with `config`, using mysql2's Connection class (a pooled
 * connection's own class needs its pool), or `like`'s class for the older mysql driver.
 */
async function openConnection(
  config: object,
  like?: MysqlConnectionLike,
): Promise<MysqlConnectionLike> {
  const Connection: ConnectionClass =
    like && !('_handshakePacket' in like)
      ? (like.constructor as ConnectionClass)
      : ((await import('mysql2')).Connection as unknown as ConnectionClass);
  const conn = new Connection({ config });
  conn.on('error', () => undefined);
  return conn;
}

/** Lends `connection`; `present` can wrap its session (e.g. to report statements to knex). */
export function mysqlLease(
  connection: MysqlConnectionLike,
  giveBack: GiveBack,
  present: SessionWrapper = unwrapped,
): ConnectionLease {
  const session = present(mysqlSession(connection));
  return leaseConnection(connection, session, giveBack, () => closer(connection));
}

/**
 * What cuts a closing connection short. mysql2's destroy() ends the socket gracefully, which a
 * server behind a partition never acknowledges: its socket is destroyed too, which also fails
 * the statements still waiting for an answer (see `unansweredOf`). mysqljs answers a pending end() (knex closes its
 * connections so) only when the socket reports its end, which its destroy() never does: the
 * end is reported as the server closing the connection would, else end() would hang.
 */
function closer(connection: MysqlConnectionLike): SocketLike {
  const protocol = connection._protocol;
  if (!protocol) {
    // mysql2's destroy() only ends the socket, which waits for a server that may never answer.
    return {
      destroy() {
        connection.destroy();
        connection.stream?.destroy();
      },
    };
  }
  return {
    destroy() {
      connection.destroy();
      if (protocol._quitSequence && !protocol._ended) protocol.end?.();
    },
  };
}

/** Connects `connection` and lends it as a connection of the library's own: releasing closes it. */
export async function openedMysqlLease(
  connection: MysqlConnectionLike,
  present?: SessionWrapper,
): Promise<ConnectionLease> {
  connection.on('error', () => undefined);
  return ownConnection(
    () =>
      new Promise<void>((resolve, reject) =>
        connection.connect((err) => (err ? reject(err) : resolve())),
      ),
    async () => connection.destroy(),
    (giveBack) => mysqlLease(connection, giveBack, present),
  );
}

/** A connection the caller owns (callback or promise flavour): never released or closed. */
export function mysqlConnectionDriver(connection: MysqlConnectionLike, flavour: string): Driver {
  return {
    dialect: 'mysql',
    description: `a ${flavour} connection`,
    pooled: false,
    identity: connection,
    lease: async () => mysqlLease(connection, CALLER_OWNED),
  };
}

/** A mysql2 pool (callback or promise flavour): borrows its connections, or opens its own. */
export function mysqlPoolDriver(pool: MysqlPoolLike, flavour: string): Driver {
  return {
    dialect: 'mysql',
    description: `a ${flavour} pool`,
    pooled: true,
    identity: pool,
    async lease() {
      const conn = await new Promise<MysqlConnectionLike>((resolve, reject) =>
        pool.getConnection((err, c) => (err ? reject(err) : resolve(c))),
      );
      return mysqlLease(conn, {
        release: async () => conn.release?.(),
        destroy: async () => (conn.destroy(), true),
      });
    },
    async open(settings?: ConnectionSettings) {
      if (settings === undefined) {
        return openedMysqlLease(await openConnection(pool.config.connectionConfig));
      }
      const mysql2 = (await import('mysql2')) as unknown as {
        createConnection(settings: ConnectionSettings): MysqlConnectionLike;
      };
      return openedMysqlLease(mysql2.createConnection(settings));
    },
    // The promise pool's end() calls the callback pool's.
    whenEnding: (onEnding) => runBefore(pool, 'end', onEnding),
  };
}
