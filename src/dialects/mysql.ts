import {
  databaseError,
  InvalidKeyError,
  InvalidOptionError,
  LockDeadlockError,
} from '../errors.js';
import { decodeUtf8, describe, hashHex, isBytes, utf8, type LockKey } from '../keys.js';
import { errorNumber, firstRowValue, type Dialect, type Wait } from './dialect.js';

/** MySQL's limit on lock names, in characters. */
const MYSQL_NAME_MAX = 64;
const HASHED_PREFIX_CHARS = 39;
const HASH_BYTES = 12;
/** Seconds that both MySQL and MariaDB read as "wait forever" (MariaDB refuses negatives). */
const FOREVER_SECONDS = 4294967295;
const DEADLOCK_ERRNOS = new Set([1213, 3058]);
const INTERRUPTED_ERRNO = 1317;

/**
 * The MySQL lock name for a key, as sqlalchemy-dlock computes it: strings as they are, integers
 * as decimal text, bytes decoded as UTF-8. A name over 64 characters (code points) becomes its
 * first 39 characters, `~`, and the 24 hex digits of the 12-byte BLAKE2b digest of its UTF-8
 * bytes: 64 characters, deterministic, and still readable in `SHOW PROCESSLIST`.
 */
export function mysqlName(key: LockKey): string {
  let name: string;
  if (typeof key === 'string') name = key;
  else if (isBytes(key)) name = decodeUtf8(key);
  else if (typeof key === 'bigint') name = key.toString();
  else if (typeof key === 'number' && Number.isFinite(key)) name = String(key);
  else
    throw new InvalidKeyError(
      `Expected a string, number, bigint or bytes key, got ${describe(key)}.`,
    );
  return shortenName(name);
}

function shortenName(name: string): string {
  if (name.length === 0) {
    throw new InvalidKeyError('MySQL lock names cannot be empty: pass a non-empty key.');
  }
  const bytes = utf8(name);
  const codePoints = Array.from(name);
  if (codePoints.length <= MYSQL_NAME_MAX) return name;
  return `${codePoints.slice(0, HASHED_PREFIX_CHARS).join('')}~${hashHex(bytes, HASH_BYTES)}`;
}

export function timeoutSeconds(wait: Wait, flavor: 'mysql' | 'mariadb' | undefined): number {
  if (wait.kind === 'try') return 0;
  if (wait.kind === 'forever') return FOREVER_SECONDS;
  // MariaDB honours fractions of a second; MySQL reads whole seconds, so round up there.
  return flavor === 'mysql' ? Math.ceil(wait.ms / 1000) : Math.ceil(wait.ms) / 1000;
}

/** MySQL / MariaDB named locks (`GET_LOCK`): session level and exclusive only. */
export const mysqlDialect: Dialect<string> = {
  name: 'mysql',

  convertKey: mysqlName,

  checkConvertedKey(value: unknown): string {
    if (typeof value !== 'string') {
      throw new InvalidKeyError(
        `A MySQL convert function must return a string, got ${describe(value)}.`,
      );
    }
    return shortenName(value);
  },

  checkMode(mode) {
    if (mode.shared) {
      throw new InvalidOptionError(
        'MySQL and MariaDB named locks are exclusive only: remove `shared: true`.',
      );
    }
    if (mode.xact) {
      throw new InvalidOptionError(
        'MySQL and MariaDB named locks are session level only: remove `xact: true`.',
      );
    }
  },

  async acquire(session, name, _mode, wait, cancelled) {
    let result: unknown;
    try {
      const seconds = timeoutSeconds(wait, session.serverFlavor);
      const results = await session.query('SELECT GET_LOCK(?, ?) AS acquired', [name, seconds]);
      result = firstRowValue(results[0], 'acquired');
    } catch (err) {
      const errno = errorNumber(err);
      if (errno === INTERRUPTED_ERRNO && cancelled()) return false;
      if (DEADLOCK_ERRNOS.has(errno as number)) {
        throw new LockDeadlockError(
          'The database detected a deadlock between named-lock waits and failed this one: ' +
            'take locks in the same order everywhere, then retry.',
          { cause: err },
        );
      }
      throw databaseError('GET_LOCK', err);
    }
    if (result === 1 || result === 1n) return true;
    if (result === 0 || result === 0n) return false;
    // MariaDB answers NULL to a wait killed by KILL QUERY.
    if (cancelled()) return false;
    throw databaseError('GET_LOCK', new Error(`GET_LOCK(${JSON.stringify(name)}) returned NULL`));
  },

  async release(session, name) {
    const results = await session.query('SELECT RELEASE_LOCK(?) AS released', [name]);
    const value = firstRowValue(results[0], 'released');
    return value === 1 || value === 1n;
  },
};
