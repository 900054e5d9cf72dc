/**
 * Every database family the library speaks, by name. `createLock`, `inspectLock` and the CLI
 * look a family up here and never branch on it; a new family is one folder under `dialects/`,
 * its line below and its lock class in `locks/registry.ts`.
 */
import type { DialectModule } from './module.js';
import { mysqlModule } from './mysql/index.js';
import { postgresModule } from './postgres/index.js';

const DIALECTS = {
  postgres: postgresModule,
  mysql: mysqlModule,
} as const;

/** A registered family's name, e.g. `'postgres'`. */
export type DialectName = keyof typeof DIALECTS;

/** The key type of the family named `Name`: bigint (PostgreSQL) or string (MySQL). */
export type KeyOf<Name extends DialectName> =
  (typeof DIALECTS)[Name] extends DialectModule<infer Key> ? Key : never;

type Registered = DialectModule<bigint | string>;

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
