import { InvalidOptionError, poolTimeout } from '../errors.js';
import type { ConnectionLease, ConnectionSettings, Driver } from './types.js';
import { openedPgLease, pgLease, pgSettings, type PgClientLike } from './pg.js';
import { mysqlLease, openedMysqlLease, type MysqlConnectionLike } from './mysql2.js';
import { CALLER_OWNED, type GiveBack, type SessionWrapper } from './lease.js';
import { runBefore } from './run-before.js';
import {
  ALWAYS_HEARD,
  heardThrough,
  KnexReportedSession,
  type Heard,
  type KnexEventClient,
} from './knex-events.js';

/** The parts of `knex.client` the library uses. */
interface KnexClientLike extends KnexEventClient {
  readonly driverName?: string;
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<unknown>;
  acquireRawConnection(): Promise<unknown>;
  destroyRawConnection(connection: unknown): Promise<unknown>;
  /** The driver module knex loaded (pg, pg.native, mysql, mysql2). */
  readonly driver?: unknown;
  /** Asked by knex's pool before it hands a connection out again. */
  validateConnection?(connection: unknown): boolean | Promise<boolean>;
}

/** A knex instance or transaction, as far as the library looks at it. */
export interface KnexLike {
  readonly client: KnexClientLike;
  readonly isTransaction?: boolean;
  readonly executionPromise?: Promise<unknown>;
  isCompleted?(): boolean;
  commit?: (value?: unknown) => unknown;
  rollback?: (error?: unknown) => unknown;
}

/** How the library drives the connections of one kind of knex client. */
interface KnexConnectionAdapter {
  /** The dialect the client speaks, by its registry name. */
  readonly dialect: string;
  lease(connection: unknown, giveBack: GiveBack, present: SessionWrapper): ConnectionLease;
  /** Opens a connection with `settings` through the driver module knex loaded. */
  open(
    driver: unknown,
    settings: ConnectionSettings,
    present: SessionWrapper,
  ): Promise<ConnectionLease>;
}

const PG_ADAPTER: KnexConnectionAdapter = {
  dialect: 'postgres',
  lease: (connection, giveBack, present) => pgLease(connection as PgClientLike, giveBack, present),
  open(driver, settings, present) {
    const pg = driver as { Client: new (config: object) => PgClientLike };
    return openedPgLease(new pg.Client(pgSettings(settings)), present);
  },
};

const MYSQL_ADAPTER: KnexConnectionAdapter = {
  dialect: 'mysql',
  lease: (connection, giveBack, present) =>
    mysqlLease(connection as MysqlConnectionLike, giveBack, present),
  open(driver, settings, present) {
    const mysql = driver as { createConnection(settings: unknown): MysqlConnectionLike };
    return openedMysqlLease(mysql.createConnection(settings), present);
  },
};

/** knex clients whose advisory / named locks work, by `client.driverName`. */
const KNEX_DRIVERS = {
  pg: PG_ADAPTER,
  pgnative: PG_ADAPTER,
  mysql: MYSQL_ADAPTER,
  mysql2: MYSQL_ADAPTER,
} as const;

export type KnexDriverName = keyof typeof KNEX_DRIVERS;

export function isKnex(target: unknown): target is KnexLike {
  const client = (target as { client?: Partial<KnexClientLike> } | null)?.client;
  return (
    typeof target === 'function' &&
    typeof client === 'object' &&
    client !== null &&
    typeof client.acquireConnection === 'function' &&
    typeof client.releaseConnection === 'function'
  );
}

/** The knex driver name if knex-dlock supports it, else undefined. */
export function supportedKnexDriver(knex: KnexLike): KnexDriverName | undefined {
  const name = knex.client.driverName;
  return name !== undefined && Object.hasOwn(KNEX_DRIVERS, name)
    ? (name as KnexDriverName)
    : undefined;
}

/** Statements on a knex target's connections are reported as knex reports its own. */
function reportingTo(client: KnexEventClient, heard: Heard = ALWAYS_HEARD): SessionWrapper {
  return (session) => new KnexReportedSession(session, client, heard);
}

function leaseFor(
  client: KnexClientLike,
  driverName: KnexDriverName,
  connection: unknown,
  giveBack: GiveBack,
  heard: Heard = ALWAYS_HEARD,
) {
  return KNEX_DRIVERS[driverName].lease(connection, giveBack, reportingTo(client, heard));
}

/** Watchers of each knex transaction's end, installed once per transaction. */
const endingWatchers = new WeakMap<KnexLike, Set<() => void>>();

/**
 * Calls `onEnding` just before the transaction sends COMMIT or ROLLBACK, so that statements
 * queued by it still run on the transaction's connection before knex gives that back.
 */
function onTransactionEnding(trx: KnexLike, onEnding: () => void): () => void {
  let watchers = endingWatchers.get(trx);
  if (!watchers) {
    const installed = new Set<() => void>();
    watchers = installed;
    endingWatchers.set(trx, installed);
    const notify = () => {
      for (const watcher of [...installed]) watcher();
    };
    for (const name of ['commit', 'rollback'] as const) {
      const end = trx[name];
      if (typeof end !== 'function') continue;
      trx[name] = (arg?: unknown) => {
        notify();
        return end.call(trx, arg);
      };
    }
  }
  watchers.add(onEnding);
  return () => watchers.delete(onEnding);
}

/** A knex transaction: locks run on its connection, which knex gives back when it ends. */
export function knexTransactionDriver(trx: KnexLike, driverName: KnexDriverName): Driver {
  return {
    dialect: KNEX_DRIVERS[driverName].dialect,
    description: `a knex transaction (${driverName})`,
    pooled: false,
    transaction: true,
    identity: trx,
    async lease(): Promise<ConnectionLease> {
      // A finished transaction's connection is back in the pool, maybe someone else's now.
      if (trx.isCompleted?.()) {
        throw new InvalidOptionError(
          'The knex transaction has already been committed or rolled back: create the lock on ' +
            'a transaction that is still open, or on the knex instance.',
        );
      }
      const connection = await trx.client.acquireConnection();
      const lease = leaseFor(trx.client, driverName, connection, CALLER_OWNED);
      return Object.assign(lease, {
        onTransactionEnding: (onEnding: () => void) => onTransactionEnding(trx, onEnding),
      });
    },
  };
}

/** Connections the library closed while knex's pool still counts them. */
const discarded = new WeakSet<object>();
const refusing = new WeakSet<KnexClientLike>();

/**
 * Makes knex's pool drop the connections the library closed, silently. (knex's own mark for
 * that, `__knex__disposed`, makes it print "Connection Error" on stdout through its logger.)
 * knex asks `validateConnection` before it lends an idle connection again.
 */
function refuseDiscarded(client: KnexClientLike): void {
  if (refusing.has(client)) return;
  refusing.add(client);
  const validate = client.validateConnection;
  client.validateConnection = function (this: KnexClientLike, connection: unknown) {
    if (discarded.has(connection as object)) return false;
    return validate ? validate.call(this, connection) : true;
  };
}

/**
 * A knex instance: borrows pooled connections, or opens connections of the library's own through
 * knex's client. A borrowed connection that may still hold a lock is closed and marked so that
 * knex's pool discards it instead of handing it out again.
 */
export function knexDriver(knex: KnexLike, driverName: KnexDriverName): Driver {
  const client = knex.client;
  const heard = heardThrough(knex);
  return {
    dialect: KNEX_DRIVERS[driverName].dialect,
    description: `a knex instance (${driverName})`,
    pooled: true,
    identity: client,
    async lease() {
      const raw = await client.acquireConnection().catch((err: unknown) => {
        throw (err as { name?: unknown }).name === 'KnexTimeoutError'
          ? poolTimeout(`The knex instance (${driverName})`, err)
          : err;
      });
      return leaseFor(
        client,
        driverName,
        raw,
        {
          release: async () => void (await client.releaseConnection(raw)),
          async destroy() {
            refuseDiscarded(client);
            discarded.add(raw as object);
            // knex marks a connection that ends as disposed, and prints that mark when its pool
            // next looks at it; the pool drops this one through validateConnection instead.
            Object.defineProperty(raw, '__knex__disposed', { set() {}, configurable: true });
            await client.destroyRawConnection(raw).catch(() => undefined);
            await client.releaseConnection(raw);
            return true;
          },
        },
        heard,
      );
    },
    async open(settings) {
      if (settings !== undefined) return openWithSettings(client, driverName, settings, heard);
      const raw = await client.acquireRawConnection();
      const close = async () =>
        void (await client.destroyRawConnection(raw).catch(() => undefined));
      return leaseFor(
        client,
        driverName,
        raw,
        { release: close, destroy: async () => (await close(), true) },
        heard,
      );
    },
    // knex.destroy() calls client.destroy().
    whenEnding: (onEnding) => runBefore(client, 'destroy', onEnding),
  };
}

/** A connection to another address than knex's, opened with the driver module knex loaded. */
function openWithSettings(
  client: KnexClientLike,
  driverName: KnexDriverName,
  settings: ConnectionSettings,
  heard: Heard,
): Promise<ConnectionLease> {
  return KNEX_DRIVERS[driverName].open(client.driver, settings, reportingTo(client, heard));
}
