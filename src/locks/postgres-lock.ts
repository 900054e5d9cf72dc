import { postgresKey } from '../dialects/postgres/dialect.js';
import { ensureInt64, type LockKey } from '../keys.js';
import { BaseLock } from '../lock/base-lock.js';

/**
 * A PostgreSQL advisory lock: session or transaction level (`xact`), exclusive or `shared`.
 * Create it with {@link createLock}.
 */
export class PostgresLock extends BaseLock<bigint> {
  /**
   * The int64 that sqlalchemy-dlock derives from a key: integers as they are (within int64),
   * strings (UTF-8) and bytes hashed with BLAKE2b (8-byte digest, read as signed little-endian).
   *
   * @example
   * ```ts
   * PostgresLock.convert('hello'); // 9022087748821825191n
   * ```
   */
  static convert(key: LockKey): bigint {
    return postgresKey(key);
  }

  /** Returns `value` as a bigint if it is an integer in signed int64, else throws ERR_DLOCK_INVALID_KEY. */
  static ensureInt64(value: number | bigint): bigint {
    return ensureInt64(value);
  }
}
