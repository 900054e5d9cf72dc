/**
 * Every database family the library speaks, by name. `createLock`, `inspectLock` and the CLI
 * look a family up here and never branch on it; a new family is one folder under `dialects/`
 * and its lines below.
 */
import type { DialectModule } from './module.js';
import type { MysqlLock } from './mysql/lock.js';
import { mysqlModule } from './mysql/index.js';
import type { PostgresLock } from './postgres/lock.js';
import { postgresModule } from './postgres/index.js';

/** The lock class of each registered database family, by the family's name. */
export interface RegisteredLocks {
  postgres: PostgresLock;
  mysql: MysqlLock;
}

/** What `createLock` returns: the lock class of one of the registered families. */
export type RegisteredLock = RegisteredLocks[keyof RegisteredLocks];

/** A registered family's name, e.g. `'postgres'`. */
export type DialectName = keyof RegisteredLocks;

type Registered = DialectModule<bigint | string, RegisteredLock>;

const DIALECTS = {
  postgres: postgresModule,
  mysql: mysqlModule,
} satisfies { readonly [Name in DialectName]: { createLock(parts: never): RegisteredLocks[Name] } };

/** The module of the family named `name`; a name no module has is a programming error. */
export function dialectModule(name: string): Registered {
  const found = (DIALECTS as Readonly<Record<string, unknown>>)[name];
  if (!found) throw new TypeError(`No dialect is registered as "${name}".`);
  return found as Registered;
}

/** Every registered family, with its name. */
export function dialectModules(): readonly (readonly [DialectName, Registered])[] {
  return Object.entries(DIALECTS) as [DialectName, Registered][];
}
