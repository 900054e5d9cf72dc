import type { ConnectionMode } from '../connections/registry.js';
import type { Pooler } from '../connections/strategy.js';
import type { Wait } from '../dialects/dialect.js';
import { InvalidOptionError, type LockLostError } from '../errors.js';
import { describe, type LockKey } from '../keys.js';
import { checkLossDetection, type LossDetection } from '../loss-detection.js';

/** Options of {@link BaseLock.acquire}. */
export interface AcquireOptions {
  /** `false` tries once and never waits (same as `timeout: 0`). Default `true`. */
  block?: boolean;
  /**
   * The longest wait, in milliseconds; a negative value counts as 0, and 2^31 - 1 or more (or
   * `Infinity`) waits forever. Default: wait forever.
   * PostgreSQL and MariaDB honour milliseconds; MySQL waits in whole seconds (rounded up).
   */
  timeout?: number;
  /** Aborting it cancels the wait on the server; `acquire()` then rejects with its reason. */
  signal?: AbortSignal;
}

/** Options of {@link createLock}. */
export interface LockOptions<K = LockKey> {
  /** A shared lock: shared locks do not exclude each other (PostgreSQL only). Default `false`. */
  shared?: boolean;
  /**
   * A transaction-level lock, held until the transaction ends (PostgreSQL only; the target must
   * be a transaction or a connection inside one). Default `false`.
   */
  xact?: boolean;
  /**
   * Turns the key into the database key yourself: an int64 `bigint` for PostgreSQL, a lock name
   * `string` for MySQL. Default: the sqlalchemy-dlock conversion.
   */
  convert?: (key: K) => bigint | string;
  /**
   * For pool targets (knex instance, pg.Pool, mysql2 pool), where the lock's connection comes
   * from. `'multiplexed'` (the default): a few connections of the library's own, opened from
   * the target's settings and shared by all its locks (see `configureLockConnections`), so
   * that locks never take connections the application needs. `'pool'`: a connection borrowed
   * from the application's pool for the wait and the hold. `'dedicated'`: a connection opened
   * for this lock and closed after it.
   */
  connection?: ConnectionMode;
  /** Called once, with an `ERR_DLOCK_LOST` error, if the held lock's connection dies. */
  onLost?: (error: LockLostError) => void;
  /**
   * Bounds on a silent fault (a partition, a host that vanished): the holder declares the lock
   * lost within `detect` ms, and the server frees the key within `free` ms of the holder's last
   * answered health check, never before the holder knows. On by default on connections of the
   * library's own (pool targets' `'multiplexed'` and `'dedicated'` connections); for a
   * multiplexed lock `free` is set for all of them with `configureLockConnections`. On a
   * caller's connection (`pg.Client`, a knex transaction, `connection: 'pool'`) off unless
   * given: `{}` takes the defaults, and then sets the server bound on that connection's session
   * (PostgreSQL TCP settings, MySQL `wait_timeout`). `false` turns it off.
   */
  lossDetection?: LossDetection | false;
  /**
   * The health check's period in milliseconds, instead of the one `lossDetection.detect`
   * chooses: a ping every `keepalive` ms, each given as long to answer. `false` sends no health
   * checks (on MySQL / MariaDB it then also leaves `wait_timeout` alone, which a quiet healthy
   * holder would outlive). Default: from `lossDetection`.
   */
  keepalive?: number | false;
  /**
   * PostgreSQL: prepare the lock statements once per connection (the default, `true`), so that
   * each operation costs the server no parse and plan. `false` sends them unprepared, for
   * poolers that cannot carry prepared statements (PgBouncer in transaction mode before 1.21, or
   * without `max_prepared_statements`); behind a detected pooler they are never prepared. MySQL
   * statements are never prepared.
   */
  preparedStatements?: boolean;
  /**
   * Give each grant a fencing token ({@link BaseLock.fencingToken}): a bigint larger than the
   * token of every earlier grant of the key, to pass along with each write that the lock
   * guards, so that the resource can refuse the writes of a holder that lost the lock without
   * knowing. PostgreSQL takes it from the sequence `knex_dlock_fencing` in the statement that
   * grants the lock; MySQL / MariaDB from the table `knex_dlock_fencing`, one statement more.
   * Both are created on first use where the user may (see `setUpFencing`). Default `false`.
   */
  fencing?: boolean;
  /**
   * Allow locks on a server whose locks exclude only its own sessions: a PostgreSQL hot
   * standby, a MySQL / MariaDB server with `read_only` on (a replica), a MariaDB Galera node.
   * By default acquire refuses there with `ERR_DLOCK_SERVER_LOCAL` before locking anything,
   * since such a lock excludes nobody on the primary or the other nodes; pass `true` for locks
   * meant for that one server's sessions (a deliberately single-node Galera). Fencing tokens
   * are never taken on a standby. Default `false`.
   */
  serverLocal?: boolean;
  /**
   * PostgreSQL: how the connection pooler in front of the server pools, where there is one
   * (PgBouncer, Supavisor, RDS Proxy). Default: detected — a backend pid that differs from the
   * handshake's process id tells a pooler, which is then taken to pool transactions, the safe
   * guess: the library's own lock connections keep a transaction open while they hold (so the
   * pooler keeps them on one server session), waits try again every 20–250 ms instead of waiting
   * in the server, statements are not prepared, and session-level locks on a connection of the
   * caller's own are refused (`ERR_DLOCK_BEHIND_POOLER`). `'session'` declares session pooling:
   * locks then work as on a direct connection. `'transaction'` declares transaction pooling
   * where it cannot be detected (pg-native, a pooler that passes the backend's process id on).
   */
  pooler?: Pooler;
}

/** PostgreSQL's lock_timeout tops out at 2^31 - 1 ms (about 24.8 days); longer waits are forever. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

const CONNECTION_MODES: readonly ConnectionMode[] = ['multiplexed', 'pool', 'dedicated'];
const POOLERS: readonly Pooler[] = ['session', 'transaction'];

const LOCK_OPTION_NAMES = new Set([
  'shared',
  'xact',
  'convert',
  'connection',
  'onLost',
  'keepalive',
  'lossDetection',
  'preparedStatements',
  'fencing',
  'serverLocal',
  'pooler',
]);
const ACQUIRE_OPTION_NAMES = new Set(['block', 'timeout', 'signal']);

/** Refuses option names the library does not know: a typo must not silently change behaviour. */
export function checkOptionNames(options: object, known: ReadonlySet<string>, where: string): void {
  for (const name of Object.keys(options)) {
    if (!known.has(name)) {
      throw new InvalidOptionError(
        `Unknown option "${name}" for ${where}; expected one of: ${[...known].join(', ')}.`,
      );
    }
  }
}

function checkType(value: unknown, type: string, name: string): void {
  if (value !== undefined && typeof value !== type) {
    throw new InvalidOptionError(`Option "${name}" must be a ${type}, got ${describe(value)}.`);
  }
}

/** Validates createLock's options before anything else happens. */
export function checkLockOptions(options: LockOptions<never>): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`Lock options must be an object, got ${describe(options)}.`);
  }
  checkOptionNames(options, LOCK_OPTION_NAMES, 'createLock');
  checkType(options.shared, 'boolean', 'shared');
  checkType(options.xact, 'boolean', 'xact');
  checkType(options.convert, 'function', 'convert');
  checkType(options.onLost, 'function', 'onLost');
  checkType(options.preparedStatements, 'boolean', 'preparedStatements');
  checkType(options.fencing, 'boolean', 'fencing');
  checkType(options.serverLocal, 'boolean', 'serverLocal');
  checkLossDetection(options.lossDetection);
  const keepalive: unknown = options.keepalive;
  if (
    keepalive !== undefined &&
    keepalive !== false &&
    (typeof keepalive !== 'number' || !(keepalive >= 10) || keepalive > MAX_TIMEOUT_MS)
  ) {
    throw new InvalidOptionError(
      `Option "keepalive" must be false or a number of milliseconds from 10 to ${MAX_TIMEOUT_MS}, got ${describe(keepalive)}.`,
    );
  }
  if (options.pooler !== undefined && !POOLERS.includes(options.pooler)) {
    throw new InvalidOptionError(
      `Option "pooler" must be 'session' or 'transaction', got ${describe(options.pooler)}.`,
    );
  }
  if (options.connection !== undefined && !CONNECTION_MODES.includes(options.connection)) {
    throw new InvalidOptionError(
      `Option "connection" must be one of ${CONNECTION_MODES.map((m) => `'${m}'`).join(', ')}, ` +
        `got ${describe(options.connection)}.`,
    );
  }
}

/** Checks a timeout in milliseconds: a number, not NaN; negative counts as 0. */
export function checkTimeout(timeout: unknown): number | undefined {
  if (timeout === undefined) return undefined;
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) {
    throw new InvalidOptionError(
      `Option "timeout" must be a number of milliseconds, got ${describe(timeout)}.`,
    );
  }
  return Math.max(0, timeout);
}

/** Turns acquire's options into how long to wait. */
export function parseWait(options: AcquireOptions): Wait {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`Acquire options must be an object, got ${describe(options)}.`);
  }
  checkOptionNames(options, ACQUIRE_OPTION_NAMES, 'acquire');
  checkType(options.block, 'boolean', 'block');
  checkSignal(options.signal);
  const timeout = checkTimeout(options.timeout);
  if (options.block === false || timeout === 0) return { kind: 'try' };
  if (timeout === undefined || timeout >= MAX_TIMEOUT_MS) return { kind: 'forever' };
  return { kind: 'timed', ms: timeout };
}

export function checkSignal(signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidOptionError(
      `Option "signal" must be an AbortSignal, got ${describe(signal)}.`,
    );
  }
}
