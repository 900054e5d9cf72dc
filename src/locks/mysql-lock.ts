import { mysqlName } from '../dialects/mysql/dialect.js';
import type { LockKey } from '../keys.js';
import { BaseLock } from '../lock/base-lock.js';

/** A MySQL / MariaDB named lock (`GET_LOCK`). Create it with {@link createLock}. */
export class MysqlLock extends BaseLock<string> {
  /**
   * The lock name that sqlalchemy-dlock derives from a key: strings as they are, numbers as
   * decimal text, bytes decoded as UTF-8. Names over 64 characters are shortened to their first
   * 39 characters, `~`, and 24 hex digits of their BLAKE2b-96 hash.
   *
   * @example
   * ```ts
   * MysqlLock.convert(42); // '42'
   * ```
   */
  static convert(key: LockKey): string {
    return mysqlName(key);
  }
}
