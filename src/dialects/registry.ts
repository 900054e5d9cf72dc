/**
 * Every database family the library speaks, by name. `createLock`, `inspectLock` and the CLI
 * look a family up here and never branch on it; a new family is one folder under `dialects/`
 * and one line below.
 */
import { mysqlModule } from './mysql/index.js';
import { postgresModule } from './postgres/index.js';

const DIALECTS = {
  postgres: postgresModule,
  mysql: mysqlModule,
};

/** A registered family's name, e.g. `'postgres'`. */
export type DialectName = keyof typeof DIALECTS;

type Registered = (typeof DIALECTS)[DialectName];

/** The lock classes of the registered families: what `createLock` returns. */
export type RegisteredLock = ReturnType<Registered['createLock']>;

/** The module of the family named `name`; a name no module has is a programming error. */
export function dialectModule(name: string): Registered {
  const found = (DIALECTS as Readonly<Record<string, Registered>>)[name];
  if (!found) throw new TypeError(`No dialect is registered as "${name}".`);
  return found;
}

/** Every registered family, with its name. */
export function dialectModules(): readonly (readonly [DialectName, Registered])[] {
  return Object.entries(DIALECTS) as [DialectName, Registered][];
}
