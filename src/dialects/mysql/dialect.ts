import type { Row, SqlSession } from '../../drivers/types.js';
import { databaseError, InvalidKeyError } from '../../errors.js';
import {
  decodeUtf8,
  describe,
  hashHex,
  isBytes,
  rememberedPerString,
  utf8,
  type LockKey,
} from '../../keys.js';
import {
  cancelFromElsewhere,
  firstRowValue,
  GRANTED,
  type Grant,
  type Dialect,
  type Wait,
} from '../dialect.js';
import { IN_TRANSACTION, mysqlBatching } from './batching.js';
import { mysqlFencingStore, nextMysqlFencingToken } from './fencing.js';
import { mysqlInspection } from './inspect.js';
import { mysqlServerBounds } from './server-bounds.js';
import { getLockErrorOutcome, getLockValueOutcome, type GetLockOutcome } from './outcomes.js';

/** MySQL's limit on lock names, in characters. */
const MYSQL_NAME_MAX = 64;
/** MariaDB's further limit, in UTF-8 bytes (error 1059 beyond it). */
const MARIADB_NAME_MAX_BYTES = 192;
const HASHED_PREFIX_CHARS = 39;
const HASH_BYTES = 12;
/** Seconds that both MySQL and MariaDB read as "wait forever" (MariaDB refuses negatives). */
const FOREVER_SECONDS = 4294967295;
const GET_LOCK = 'SELECT GET_LOCK(?, ?) AS acquired';
/** MariaDB's GET_LOCK for a fenced lock, which also says whether a token may be taken. */
const GET_LOCK_FENCED = `SELECT GET_LOCK(?, ?) AS acquired, ${IN_TRANSACTION}`;
const RELEASE_LOCK = 'SELECT RELEASE_LOCK(?) AS released';

/**
 * The MySQL lock name for a key, as sqlalchemy-dlock computes it: strings as they are, integers
 * as decimal text, bytes decoded as UTF-8. A name that the servers cannot take as it is becomes
 * its first 39 characters, `~`, and the 24 hex digits of the 12-byte BLAKE2b digest of its
 * UTF-8 bytes: at most 64 characters and 181 bytes, deterministic, and still readable in
 * `SHOW PROCESSLIST`. That is a name over 64 characters (code points), as sqlalchemy-dlock
 * does; and, where this library departs from it, a name over MariaDB's 192 UTF-8 bytes (which
 * MariaDB refuses) or with a NUL character (at which MariaDB cuts the name, so that `'a\0b'`
 * and `'a'` would be one lock; in the prefix a NUL shows as U+FFFD).
 */
export function mysqlName(key: LockKey): string {
  if (typeof key === 'string') return shortenedString(key);
  let name: string;
  if (isBytes(key)) name = decodeUtf8(key);
  else if (typeof key === 'bigint') name = key.toString();
  else if (typeof key === 'number' && Number.isFinite(key)) name = String(key);
  else
    throw new InvalidKeyError(
      `Expected a string, number, bigint or bytes key, got ${describe(key)}.`,
    );
  return shortenName(name);
}

const shortenedString = rememberedPerString(shortenName);

function shortenName(name: string): string {
  if (name.length === 0) {
    throw new InvalidKeyError('MySQL lock names cannot be empty: pass a non-empty key.');
  }
  const bytes = utf8(name);
  const codePoints = Array.from(name);
  const fits =
    codePoints.length <= MYSQL_NAME_MAX &&
    bytes.length <= MARIADB_NAME_MAX_BYTES &&
    !name.includes('\0');
  if (fits) return name;
  const prefix = codePoints.slice(0, HASHED_PREFIX_CHARS).join('').replaceAll('\0', '\uFFFD');
  return `${prefix}~${hashHex(bytes, HASH_BYTES)}`;
}

/**
 * The `GET_LOCK` timeout, in seconds, for a wait: 0 for a try, 4294967295 to wait forever (both
 * servers read it so; MariaDB refuses negatives). A timed wait of `ms` milliseconds becomes
 * fractional seconds on MariaDB, which honours them (`ms` rounded up to the millisecond), and
 * whole seconds rounded up on MySQL, which reads the timeout as an integer (it would round
 * 1.2 to 1 and 0.2 to 0, a try): 1500 ms waits 2 s there, never less than asked. `flavor`
 * undefined (the driver did not say) is treated as MariaDB.
 *
 * @example
 * ```ts
 * timeoutSeconds({ kind: 'timed', ms: 1500 }, 'mysql'); // 2
 * timeoutSeconds({ kind: 'timed', ms: 1500 }, 'mariadb'); // 1.5
 * ```
 */
export function timeoutSeconds(wait: Wait, flavor: 'mysql' | 'mariadb' | undefined): number {
  if (wait.kind === 'try') return 0;
  if (wait.kind === 'forever') return FOREVER_SECONDS;
  return flavor === 'mysql' ? Math.ceil(wait.ms / 1000) : Math.ceil(wait.ms) / 1000;
}

const FLAVOR = Symbol('mysql server flavor');

/**
 * Which server answers, from its handshake version; undefined when the driver did not say.
 * Read once per connection: it cannot change after the handshake.
 */
export function serverFlavor(session: SqlSession): 'mysql' | 'mariadb' | undefined {
  const known = session.memo.get(FLAVOR) as 'mysql' | 'mariadb' | undefined;
  if (known) return known;
  const version = session.serverVersion;
  if (version === undefined) return undefined;
  const flavor = /mariadb/i.test(version) ? 'mariadb' : 'mysql';
  session.memo.set(FLAVOR, flavor);
  return flavor;
}

/**
 * Runs GET_LOCK for `name` on `session` and says what its answer means; for a fenced lock on
 * MariaDB, also whether the session is in a transaction.
 */
async function getLock(
  session: SqlSession,
  name: string,
  wait: Wait,
  cancelled: () => boolean,
  fenced: boolean,
): Promise<GetLockOutcome & { inTransaction?: boolean }> {
  const flavor = serverFlavor(session);
  const seconds = timeoutSeconds(wait, flavor);
  const sql = fenced && flavor === 'mariadb' ? GET_LOCK_FENCED : GET_LOCK;
  let results: Row[][];
  try {
    results = await session.query(sql, [name, seconds]);
  } catch (err) {
    return getLockErrorOutcome(err, cancelled());
  }
  const outcome = getLockValueOutcome(firstRowValue(results[0], 'acquired'), cancelled(), name);
  const inTransaction = firstRowValue(results[0], 'in_transaction');
  return inTransaction === undefined ? outcome : { ...outcome, inTransaction: inTransaction == 1 };
}

/**
 * The grant of a fenced lock: its token, taken while the name is held (one statement more). A
 * grant for which no token can be taken is released before the error goes up.
 */
async function fencedGrant(
  session: SqlSession,
  name: string,
  inTransaction: boolean | undefined,
): Promise<Grant> {
  try {
    const flavor = serverFlavor(session);
    return { token: await nextMysqlFencingToken(session, name, flavor, inTransaction) };
  } catch (err) {
    await session.query(RELEASE_LOCK, [name]).catch(() => undefined);
    throw err;
  }
}

/** MySQL / MariaDB named locks (`GET_LOCK`): session level and exclusive only. */
export const mysqlDialect: Dialect<string> = {
  name: 'mysql',
  title: 'MySQL / MariaDB',
  capabilities: { shared: false, xact: false, fencingInTransactions: false },

  convertKey: mysqlName,

  describeKey: (name) => `MySQL lock name ${JSON.stringify(name)}`,

  checkConvertedKey(value: unknown): string {
    if (typeof value !== 'string') {
      throw new InvalidKeyError(
        `A MySQL convert function must return a string, got ${describe(value)}.`,
      );
    }
    return shortenName(value);
  },

  async acquire(session, name, mode, wait, cancelled) {
    const outcome = await getLock(session, name, wait, cancelled, mode.fencing === true);
    switch (outcome.kind) {
      case 'acquired':
        return mode.fencing ? fencedGrant(session, name, outcome.inTransaction) : GRANTED;
      case 'not-acquired':
        return false;
      case 'interrupted':
        // MySQL's 1317 for our own KILL QUERY. A kill that lands between the grant and the end
        // of the statement fails it all the same, with the name held: release it. A session
        // that did not get the grant holds nothing of this attempt, and RELEASE_LOCK of a name
        // it does not hold changes nothing. (The library never stacks one name on one of its
        // own connections, so this hold can only be the interrupted attempt's.)
        await session.query(RELEASE_LOCK, [name]).catch((err: unknown) => {
          throw databaseError('RELEASE_LOCK after an interrupted GET_LOCK', err);
        });
        return false;
      case 'failed':
        throw outcome.error;
    }
  },

  async release(session, name) {
    const results = await session.query(RELEASE_LOCK, [name]);
    const value = firstRowValue(results[0], 'released');
    return value === 1 || value === 1n;
  },

  cancel: (session) => cancelFromElsewhere(session, 'KILL QUERY ?'),

  async ping(session) {
    await (session.ping ? session.ping() : session.query('SELECT 1'));
  },

  serverBounds: mysqlServerBounds,

  fencingStore: mysqlFencingStore,

  sessions: mysqlInspection.sessions,

  holderIds: mysqlInspection.holderIds,

  batching: mysqlBatching({ fencedGrant, flavor: serverFlavor }),
};
