/**
 * The lock class of each registered database family. The families themselves are listed in
 * `dialects/registry.ts`; this table sits above the lock's state machine because the classes
 * extend it. The compiler demands a class for every registered family.
 */
import type { DialectName, KeyOf } from '../dialects/registry.js';
import type { LockParts } from '../lock/base-lock.js';
import { MysqlLock } from './mysql-lock.js';
import { PostgresLock } from './postgres-lock.js';

/** The lock class of each registered database family, by the family's name. */
export interface RegisteredLocks {
  postgres: PostgresLock;
  mysql: MysqlLock;
}

/** What `createLock` returns: the lock class of one of the registered families. */
export type RegisteredLock = RegisteredLocks[keyof RegisteredLocks];

const LOCKS = {
  postgres: (parts) => new PostgresLock(parts),
  mysql: (parts) => new MysqlLock(parts),
} satisfies {
  readonly [Name in DialectName]: (parts: LockParts<KeyOf<Name>>) => RegisteredLocks[Name];
};

/**
 * The lock class of the family named `name`, around parts that `createLock` made; a name no
 * family has is a programming error.
 */
export function createRegisteredLock(
  name: string,
  parts: LockParts<bigint | string>,
): RegisteredLock {
  // Each family's lock class takes the key type its own dialect made.
  const create = (LOCKS as Readonly<Record<string, unknown>>)[name];
  if (!create) throw new TypeError(`No lock class is registered for "${name}".`);
  return (create as (parts: LockParts<bigint | string>) => RegisteredLock)(parts);
}
