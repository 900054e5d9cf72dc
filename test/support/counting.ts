/**
 * Counts what a target really sends to its database, at the wire: every message written to the
 * connection's socket is parsed, so a statement cannot slip past by taking another code path
 * (knex, the promise wrappers, prepared statements, pipelining all end up there).
 *
 * - A round trip is a burst of request messages written after the server last answered: pg's
 *   Parse / Bind / Execute / Sync of one parameterised query, a multi-statement simple query, or
 *   a pipelined batch each count once; two queries where the second waits for the first's
 *   answer count twice.
 * - Statements are executed SQL statements: one per pg Execute, one per `;`-separated statement
 *   of a simple query or a MySQL COM_QUERY, one per COM_STMT_EXECUTE.
 * - Parses are requests that make the server parse SQL text: pg's Parse messages and simple
 *   queries, MySQL's COM_QUERY and COM_STMT_PREPARE. A prepared statement's later executions
 *   parse nothing.
 * - Query calls are calls of the driver's `query` / `execute` methods, with their SQL, so that a
 *   benchmark can replay exactly what the library sent.
 * - Connections opened are counted for pools from their creation events.
 *
 * pg's native client writes through libpq, whose socket JavaScript never sees: of it, only query
 * calls and connections opened are counted (round trips, statements, messages and parses stay 0).
 */
import type { Socket } from 'node:net';
import { expect } from 'chai';
import mysqlCallback from 'mysql2';

export interface TrafficCounts {
  readonly roundTrips: number;
  readonly statements: number;
  readonly messages: number;
  readonly parses: number;
  readonly queryCalls: number;
  readonly connectionsOpened: number;
}

/** One call of a driver's `query` / `execute`, as the driver received it. */
export interface QueryCall {
  readonly sql: string;
  readonly params: readonly unknown[] | undefined;
}

type Protocol = 'pg' | 'mysql' | 'libpq';

interface Watched {
  readonly connection: object;
  undo(): void;
}

const PG_MESSAGE_TYPES = new Set('QPBDESHCXFdcf'.split(''));
const MYSQL_COM_QUIT = 0x01;
const MYSQL_COM_QUERY = 0x03;
const MYSQL_COM_STMT_PREPARE = 0x16;
const MYSQL_COM_STMT_EXECUTE = 0x17;
/** Commands the server does not answer: they end a burst without costing a round trip. */
const MYSQL_UNANSWERED = new Set([MYSQL_COM_QUIT, 0x19 /* COM_STMT_CLOSE */]);

/** Counts `;`-separated statements in a SQL string, ignoring `;` inside quotes. */
export function countStatements(sql: string): number {
  let count = 0;
  let pending = false;
  let quote: string | undefined;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = undefined;
      continue;
    }
    if (ch === "'" || ch === '"' || ch === '`') {
      quote = ch;
      pending = true;
    } else if (ch === ';') {
      if (pending) count += 1;
      pending = false;
    } else if (!/\s/.test(ch)) pending = true;
  }
  return count + (pending ? 1 : 0);
}

/** Sums the traffic of every connection it watches. */
export class TrafficCounter {
  #roundTrips = 0;
  #statements = 0;
  #messages = 0;
  #parses = 0;
  #queryCalls = 0;
  #connectionsOpened = 0;
  #calls: QueryCall[] = [];
  #watched = new Map<object, Watched>();
  #counted = new WeakSet<object>();
  #unhooks: (() => void)[] = [];
  #failure: Error | undefined;
  /**
   * Called with each query call once the driver has it, before any answer can arrive: a test
   * can act while the statement is on its way.
   */
  onSent: ((call: QueryCall) => void) | undefined;

  /** Totals so far; throws if the wire could not be parsed, so that a count is never a guess. */
  snapshot(): TrafficCounts {
    if (this.#failure) throw this.#failure;
    return {
      roundTrips: this.#roundTrips,
      statements: this.#statements,
      messages: this.#messages,
      parses: this.#parses,
      queryCalls: this.#queryCalls,
      connectionsOpened: this.#connectionsOpened,
    };
  }

  /** What was counted since `before`. */
  since(before: TrafficCounts): TrafficCounts {
    const now = this.snapshot();
    return {
      roundTrips: now.roundTrips - before.roundTrips,
      statements: now.statements - before.statements,
      messages: now.messages - before.messages,
      parses: now.parses - before.parses,
      queryCalls: now.queryCalls - before.queryCalls,
      connectionsOpened: now.connectionsOpened - before.connectionsOpened,
    };
  }

  /** The query calls recorded since the last call of this method. */
  takeCalls(): QueryCall[] {
    return this.#calls.splice(0);
  }

  /** How many connections are watched now (pool connections add themselves when created). */
  get connections(): number {
    return this.#watched.size;
  }

  /**
   * Runs `fn` and returns what it sent. Waits `settleMs` after it resolves so that statements a
   * library sends after resolving (fire and forget) are counted too.
   */
  async measure<T>(
    fn: () => Promise<T>,
    settleMs = 25,
  ): Promise<{ result: T; counts: TrafficCounts; calls: QueryCall[] }> {
    this.takeCalls();
    const before = this.snapshot();
    const result = await fn();
    if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs));
    return { result, counts: this.since(before), calls: this.takeCalls() };
  }

  /**
   * Watches one established connection: a pg `Client` / `PoolClient`, a mysql2 connection
   * (callback or promise flavour) or one of the older mysql driver (mysqljs). Watching the same
   * connection twice counts it once.
   */
  watchConnection(target: object): void {
    const connection = unwrapPromise(target);
    if (this.#watched.has(connection)) return;
    const protocol = protocolOf(connection);
    const undo =
      protocol === 'libpq'
        ? this.#wrapQueryMethods(connection)
        : this.#hook(connection, socketOf(connection, protocol), protocol);
    this.#watched.set(connection, { connection, undo });
  }

  /**
   * Watches a target of any kind: a connection now, a pool (knex instance, pg.Pool, mysql2
   * pool) through the connections it creates from now on, plus the idle ones it already has.
   */
  watchTarget(target: object): this {
    const knexPool = (target as { client?: { pool?: TarnPool } }).client?.pool;
    if (typeof target === 'function' && knexPool) {
      this.#watchOpened((target as unknown as { client: object }).client, 'acquireRawConnection');
      const onCreate = (_id: unknown, connection: object) => this.#opened(connection);
      knexPool.on('createSuccess', onCreate);
      this.#unhooks.push(() => knexPool.removeListener('createSuccess', onCreate));
      for (const free of knexPool.free ?? []) this.watchConnection(free.resource);
      for (const used of knexPool.used ?? []) this.watchConnection(used.resource);
      return this;
    }
    const pool = unwrapPromise(target) as Partial<PgPool & MysqlPool>;
    if (typeof pool.totalCount === 'number' && typeof pool.connect === 'function') {
      this.#watchConstructed(pool as { Client: new (...args: never[]) => object });
      const onConnect = (client: object) => this.#opened(client);
      pool.on!('connect', onConnect);
      this.#unhooks.push(() => pool.removeListener!('connect', onConnect));
      for (const client of pool._clients ?? []) this.watchConnection(client);
      return this;
    }
    if (typeof pool.getConnection === 'function') {
      // Only connections opened with this pool's settings, as the library opens its own.
      const settings = (pool as { config?: { connectionConfig?: object } }).config
        ?.connectionConfig;
      this.#watchOpened(
        mysqlCallback.Connection.prototype,
        'connect',
        (c) => (c as { config?: object }).config === settings,
      );
      const onConnection = (connection: object) => this.#opened(connection);
      pool.on!('connection', onConnection);
      this.#unhooks.push(() => pool.removeListener!('connection', onConnection));
      for (const connection of pool._allConnections?.toArray?.() ?? [])
        this.watchConnection(connection);
      return this;
    }
    this.watchConnection(target);
    return this;
  }

  /** Stops counting and restores every hooked method and listener. */
  detach(): void {
    for (const unhook of this.#unhooks.splice(0)) unhook();
    for (const watched of this.#watched.values()) watched.undo();
    this.#watched.clear();
  }

  /**
   * Connections the library opens beside a pool for its locks: `object[name]` is the method
   * that opens one (or, for a prototype's `connect`, that connects `this`).
   */
  #watchOpened(object: object, name: string, accept = (_c: object) => true): void {
    const target = object as Record<string, unknown>;
    const original = target[name] as (...args: unknown[]) => unknown;
    const opened = (c: unknown) => void (accept(c as object) && this.#opened(c as object));
    target[name] = function (this: object, ...args: unknown[]) {
      const result = original.apply(this, args);
      if (result instanceof Promise) return result.then((c: unknown) => (opened(c), c));
      opened(this);
      return result;
    };
    this.#unhooks.push(() => (target[name] = original));
  }

  /** Clients that a pg.Pool's `Client` constructs, as the library does for its lock connections. */
  #watchConstructed(pool: { Client: new (...args: never[]) => object }): void {
    const Original = pool.Client;
    const opened = (client: object) => this.#opened(client);
    pool.Client = class extends Original {
      constructor(...args: never[]) {
        super(...args);
        // Watched once connected: the start-up exchange is not a statement.
        (this as unknown as { once(e: string, f: () => void): void }).once('connect', () =>
          opened(this),
        );
      }
    };
    this.#unhooks.push(() => (pool.Client = Original));
  }

  #opened(connection: object): void {
    if (this.#counted.has(connection)) return;
    this.#counted.add(connection);
    this.#connectionsOpened += 1;
    this.watchConnection(connection);
  }

  #hook(connection: object, socket: Socket, protocol: 'pg' | 'mysql'): () => void {
    let answeredSinceWrite = true;
    let pending: Buffer = Buffer.alloc(0);
    const onData = () => {
      answeredSinceWrite = true;
    };
    const countMessage = (weight: number, parsesSql: boolean) => {
      this.#messages += 1;
      this.#statements += weight;
      if (parsesSql) this.#parses += 1;
    };
    const startRequest = () => {
      if (answeredSinceWrite) this.#roundTrips += 1;
      answeredSinceWrite = false;
    };
    const parse = protocol === 'pg' ? parsePg : parseMysql;
    const originalWrite = socket.write;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      try {
        const bytes =
          typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
        pending = parse(Buffer.concat([pending, bytes]), startRequest, countMessage);
      } catch (err) {
        this.#failure ??= err as Error;
      }
      return (originalWrite as (...args: unknown[]) => boolean).call(socket, chunk, ...rest);
    }) as Socket['write'];
    // Prepended: the driver's own listener may send the next queued query synchronously, and
    // that must count as a new round trip.
    socket.prependListener('data', onData);
    const undoCalls = this.#wrapQueryMethods(connection);
    return () => {
      socket.write = originalWrite;
      socket.removeListener('data', onData);
      undoCalls();
    };
  }

  #wrapQueryMethods(connection: object): () => void {
    const target = connection as Record<string, unknown>;
    const restores: (() => void)[] = [];
    for (const name of ['query', 'execute']) {
      const original = target[name];
      if (typeof original !== 'function') continue;
      const hadOwn = Object.hasOwn(target, name);
      const record = (sql: unknown, params: unknown) => {
        this.#queryCalls += 1;
        const text =
          typeof sql === 'string'
            ? sql
            : ((sql as { text?: string; sql?: string } | null)?.text ??
              (sql as { sql?: string } | null)?.sql);
        // pg's named statements carry their values in the config object.
        const values = Array.isArray(params)
          ? params
          : (sql as { values?: unknown } | null)?.values;
        const call = { sql: String(text), params: Array.isArray(values) ? [...values] : undefined };
        this.#calls.push(call);
        return call;
      };
      const sent = (call: QueryCall) => this.onSent?.(call);
      target[name] = function (this: unknown, sql: unknown, params: unknown, ...rest: unknown[]) {
        const call = record(sql, params);
        const result = (original as (...args: unknown[]) => unknown).call(
          this,
          sql,
          params,
          ...rest,
        );
        sent(call);
        return result;
      };
      restores.push(() => {
        if (hadOwn) target[name] = original;
        else delete target[name];
      });
    }
    return () => restores.forEach((restore) => restore());
  }
}

/** Watches `target` (see {@link TrafficCounter.watchTarget}). */
export function countTraffic(target: object): TrafficCounter {
  return new TrafficCounter().watchTarget(target);
}

/**
 * Runs `fn` on a counter watching `target` and asserts that nothing reached the database: no
 * query call, no message, no connection opened (by a pool, or by the library beside it).
 * Resolves what `fn` resolved.
 */
export async function expectNothingSent<T>(target: object, fn: () => Promise<T>): Promise<T> {
  const counter = countTraffic(target);
  try {
    const { result, counts, calls } = await counter.measure(fn);
    expect(counts, `sent: ${calls.map((call) => call.sql).join(' | ')}`).to.deep.equal({
      roundTrips: 0,
      statements: 0,
      messages: 0,
      parses: 0,
      queryCalls: 0,
      connectionsOpened: 0,
    });
    return result;
  } finally {
    counter.detach();
  }
}

interface TarnPool {
  on(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  readonly free?: { resource: object }[];
  readonly used?: { resource: object }[];
}

interface PgPool {
  readonly totalCount: number;
  connect(): unknown;
  on(event: string, listener: (client: object) => void): unknown;
  removeListener(event: string, listener: (client: object) => void): unknown;
  readonly _clients?: object[];
}

interface MysqlPool {
  getConnection(): unknown;
  on(event: string, listener: (connection: object) => void): unknown;
  removeListener(event: string, listener: (connection: object) => void): unknown;
  readonly _allConnections?: { toArray?(): object[] };
}

/** The callback-style object behind a mysql2/promise connection or pool. */
function unwrapPromise(target: object): object {
  const inner = target as { connection?: unknown; pool?: unknown };
  if (
    typeof inner.connection === 'object' &&
    inner.connection !== null &&
    'threadId' in inner.connection
  ) {
    return inner.connection;
  }
  if (typeof inner.pool === 'object' && inner.pool !== null && 'getConnection' in inner.pool) {
    return inner.pool;
  }
  return target;
}

function protocolOf(connection: object): Protocol {
  if ('processID' in connection && 'connectionParameters' in connection) return 'pg';
  const native = (connection as { native?: { cancel?: unknown } }).native;
  if ('connectionParameters' in connection && typeof native?.cancel === 'function') return 'libpq';
  if ('threadId' in connection && 'config' in connection) return 'mysql';
  throw new Error('countTraffic: not a pg client or mysql2 connection');
}

/** The socket under a connection: mysql2 calls it `stream`, mysqljs `_socket`. */
function socketOf(connection: object, protocol: 'pg' | 'mysql'): Socket {
  const mysql = connection as { stream?: Socket; _socket?: Socket };
  const stream =
    protocol === 'pg'
      ? (connection as { connection?: { stream?: Socket } }).connection?.stream
      : (mysql.stream ?? mysql._socket);
  if (!stream || typeof stream.write !== 'function') {
    throw new Error(`countTraffic: the ${protocol} connection has no socket to watch`);
  }
  return stream;
}

type OnRequest = () => void;
type OnMessage = (statements: number, parsesSql: boolean) => void;

/**
 * Parses PostgreSQL frontend messages (type byte + int32 length) from an established
 * connection; returns the bytes of an incomplete trailing message.
 */
function parsePg(buffer: Buffer, onRequest: OnRequest, onMessage: OnMessage): Buffer {
  let offset = 0;
  while (buffer.length - offset >= 5) {
    const type = String.fromCharCode(buffer[offset]!);
    const length = buffer.readInt32BE(offset + 1);
    if (!PG_MESSAGE_TYPES.has(type) || length < 4) {
      throw new Error(
        `countTraffic: unexpected pg message ${JSON.stringify(type)} (length ${length})`,
      );
    }
    if (buffer.length - offset < 1 + length) break;
    const body = buffer.subarray(offset + 5, offset + 1 + length);
    if (type !== 'X') onRequest();
    if (type === 'Q') onMessage(countStatements(body.toString('utf8', 0, body.length - 1)), true);
    else onMessage(type === 'E' ? 1 : 0, type === 'P');
    offset += 1 + length;
  }
  return Buffer.from(buffer.subarray(offset));
}

/**
 * Parses MySQL client packets (3-byte length, sequence id); a command is a packet with sequence
 * id 0, anything else belongs to a handshake or an ongoing exchange.
 */
function parseMysql(buffer: Buffer, onRequest: OnRequest, onMessage: OnMessage): Buffer {
  let offset = 0;
  while (buffer.length - offset >= 4) {
    const length = buffer.readUIntLE(offset, 3);
    const sequence = buffer[offset + 3]!;
    if (buffer.length - offset < 4 + length) break;
    const command = buffer[offset + 4];
    if (sequence === 0 && command !== undefined) {
      if (!MYSQL_UNANSWERED.has(command)) onRequest();
      if (command === MYSQL_COM_QUERY) {
        onMessage(countStatements(buffer.toString('utf8', offset + 5, offset + 4 + length)), true);
      } else {
        onMessage(command === MYSQL_COM_STMT_EXECUTE ? 1 : 0, command === MYSQL_COM_STMT_PREPARE);
      }
    }
    offset += 4 + length;
  }
  return Buffer.from(buffer.subarray(offset));
}
