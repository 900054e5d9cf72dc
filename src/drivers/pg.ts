import { poolTimeout } from '../errors.js';
import type {
  ConnectionLease,
  ConnectionSettings,
  Driver,
  Row,
  SiblingSession,
  SqlSession,
} from './types.js';
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
import { openPgSibling } from './pg-sibling.js';
import type { PgClientLike, PgNativeBinding, PgPoolLike, PgResult } from './pg-types.js';
import { runBefore } from './run-before.js';

export type { PgClientLike, PgPoolLike } from './pg-types.js';

export function isPgClient(target: unknown): target is PgClientLike {
  const t = target as Partial<PgClientLike> | null;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.query === 'function' &&
    typeof t.connect === 'function' &&
    typeof t.connectionParameters === 'object' &&
    ('processID' in t || isNativeBinding(t.native))
  );
}

function isNativeBinding(native: unknown): native is PgNativeBinding {
  return (
    typeof native === 'object' &&
    native !== null &&
    typeof (native as Partial<PgNativeBinding>).cancel === 'function' &&
    typeof (native as Partial<PgNativeBinding>).on === 'function'
  );
}

export function isPgPool(target: unknown): target is PgPoolLike {
  const t = target as Partial<PgPoolLike> | null;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.connect === 'function' &&
    typeof t.totalCount === 'number' &&
    typeof t.Client === 'function' &&
    typeof t.options === 'object'
  );
}

function rowsOf(result: PgResult | PgResult[]): Row[][] {
  return Array.isArray(result) ? result.map((r) => r.rows ?? []) : [result.rows ?? []];
}

/**
 * Runs statements on one pg client. A statement is handed to the client at once when none of
 * the session's is running (so that a cancel finds it on the server), else queued behind them:
 * several locks share one connection, and pg deprecates calling query() while a query runs.
 */
class PgSession implements SqlSession {
  /** Statements waiting for the one that runs; undefined while none runs. */
  #queued: (() => void)[] | undefined;
  /** The last transaction status the client reported ('I', 'T' or 'E'). */
  #transactionStatus: string | undefined;
  readonly memo = new Map<symbol, unknown>();
  readonly watchCommandTags: SqlSession['watchCommandTags'];

  constructor(readonly connection: PgClientLike) {
    // The JavaScript client's protocol connection reports each CommandComplete; libpq's does not.
    const protocol = (connection as { connection?: ProtocolEvents }).connection;
    if (typeof protocol?.on === 'function') {
      this.watchCommandTags = (listener) =>
        protocol.on('commandComplete', (message: { text?: unknown }) => {
          if (typeof message.text === 'string') listener(message.text);
        });
    }
    const native = connection.native;
    if (isNativeBinding(native)) {
      stopReadingWhenBroken(native);
      native.on('readyForQuery', () => void this.#readTransactionStatus());
    }
  }

  query(sql: string, params?: readonly unknown[], name?: string): Promise<Row[][]> {
    return new Promise<Row[][]>((resolve, reject) => {
      const done = (err: unknown, result?: PgResult | PgResult[]) => {
        const next = this.#queued?.shift();
        if (next) next();
        else this.#queued = undefined;
        if (err) reject(err);
        else resolve(rowsOf(result!));
      };
      const send = () => {
        try {
          const values = params as unknown[] | undefined;
          if (name === undefined) this.connection.query(sql, values, done);
          else this.connection.query({ name, text: sql, values }, done);
        } catch (err) {
          done(err);
        }
      };
      if (this.#queued) this.#queued.push(send);
      else {
        this.#queued = [];
        send();
      }
    });
  }

  /** The backend pid; undefined on the native client, whose libpq binding does not expose it. */
  get serverId(): number | undefined {
    return this.connection.processID ?? undefined;
  }

  inTransaction(): boolean {
    const status = this.#readTransactionStatus() ?? this.#transactionStatus;
    return status === 'T' || status === 'E';
  }

  /**
   * The client's transaction status now. pg-native has none while a statement runs (libpq's
   * "active"): the status it reported after its last statement stands in, as the JavaScript
   * client's does, so that a transaction-level lock does not look released meanwhile.
   */
  #readTransactionStatus(): string | undefined {
    const client = this.connection;
    const status =
      client.getTransactionStatus?.() ?? (client as unknown as { _txStatus?: string })._txStatus;
    if (status) this.#transactionStatus = status;
    return status ?? undefined;
  }

  get requestCancel(): (() => Promise<void>) | undefined {
    const native = this.connection.native;
    if (!isNativeBinding(native)) return undefined;
    return () =>
      new Promise<void>((resolve, reject) =>
        native.cancel((err) => (err ? reject(err) : resolve())),
      );
  }

  openSibling(): Promise<SiblingSession> {
    return openPgSibling(this.connection);
  }
}

interface ProtocolEvents {
  on(event: 'commandComplete', listener: (message: { text?: unknown }) => void): unknown;
}

/**
 * pg-native reports a broken connection ('error', e.g. after pg_terminate_backend) but keeps
 * polling the socket that libpq has already closed. The next native client given the same file
 * descriptor then crashes the process (SIGSEGV in libuv) unless the broken client was ended
 * first. Stopping the poll as soon as the break is reported makes that order unimportant; the
 * client is unusable after 'error' anyway, and end() still works.
 */
function stopReadingWhenBroken(native: PgNativeBinding): void {
  native.on('error', () => native._stopReading?.());
}

/** The session of a client; one per client, as it keeps no state of a lease. */
const pgSession: (client: PgClientLike) => SqlSession = perConnection(
  (client: PgClientLike) => new PgSession(client),
);

/** The socket of a JavaScript pg client; pg's native client keeps its socket inside libpq. */
export function pgSocket(client: PgClientLike): SocketLike | undefined {
  return (client as { connection?: { stream?: SocketLike } }).connection?.stream;
}

/** Lends `connection`; `present` can wrap its session (e.g. to report statements to knex). */
export function pgLease(
  connection: PgClientLike,
  giveBack: GiveBack,
  present: SessionWrapper = unwrapped,
): ConnectionLease {
  const session = present(pgSession(connection));
  return leaseConnection(connection, session, giveBack, () => pgSocket(connection));
}

/** A pg config from a URL or a config object. */
export function pgSettings(settings: ConnectionSettings): object {
  return typeof settings === 'string' ? { connectionString: settings } : settings;
}

/** Connects `client` and lends it as a connection of the library's own: releasing closes it. */
export async function openedPgLease(
  client: PgClientLike,
  present?: SessionWrapper,
): Promise<ConnectionLease> {
  client.on('error', () => undefined);
  return ownConnection(
    () => client.connect(),
    async () => void (await client.end().catch(() => undefined)),
    (giveBack) => pgLease(client, giveBack, present),
  );
}

/** A pg.Client or PoolClient that the caller owns: the lock runs on it and never closes it. */
export function pgClientDriver(client: PgClientLike): Driver {
  return {
    dialect: 'postgres',
    description: `a pg${client.native ? ' native' : ''} ${
      typeof client.release === 'function' ? 'PoolClient' : 'Client'
    }`,
    pooled: false,
    identity: client,
    lease: async () => pgLease(client, CALLER_OWNED),
  };
}

/** A pg.Pool: borrows its clients, or opens clients of the library's own with its options. */
export function pgPoolDriver(pool: PgPoolLike): Driver {
  return {
    dialect: 'postgres',
    description: 'a pg Pool',
    pooled: true,
    identity: pool,
    async lease() {
      const client = await pool.connect().catch((err: unknown) => {
        // pg-pool's own error when connectionTimeoutMillis passes with every client lent out.
        throw err instanceof Error && err.message === 'timeout exceeded when trying to connect'
          ? poolTimeout('The pg Pool', err)
          : err;
      });
      return pgLease(client, {
        release: async () => client.release?.(),
        destroy: async () => (client.release?.(true), true),
      });
    },
    open: (settings) =>
      openedPgLease(new pool.Client(settings ? pgSettings(settings) : { ...pool.options })),
    whenEnding: (onEnding) => runBefore(pool, 'end', onEnding),
  };
}
