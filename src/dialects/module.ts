/**
 * What the registry knows of one database family: its dialect, its lock class, and how the CLI
 * reaches it. Each family's folder exports one module; `registry.ts` lists them.
 */
import type { CliDatabase } from '../cli/connect.js';
import type { ConnectionSettings } from '../cli/connection-settings.js';
import type { BaseLock, LockParts } from '../lock.js';
import type { Dialect } from './dialect.js';

/** Lock options a family may read when it picks the dialect a lock uses. */
export interface DialectChoice {
  readonly preparedStatements?: boolean | undefined;
}

export interface DialectModule<Key extends bigint | string, Lock extends BaseLock<Key>> {
  /** The dialect of inspection and the CLI; locks may use a variant (see `dialectFor`). */
  readonly dialect: Dialect<Key>;
  /** The dialect a lock created with these options uses. */
  dialectFor(options: DialectChoice): Dialect<Key>;
  /** The family's lock class, around parts that `createLock` made. */
  createLock(parts: LockParts<Key>): Lock;
  readonly cli: DialectCli;
}

/** How the command line finds and opens a connection to one family's servers. */
export interface DialectCli {
  /** URL schemes that name the family, lower case, without `:`. */
  readonly urlSchemes: readonly string[];
  /** knexfile `client` names that speak to the family. */
  readonly knexClients: readonly string[];
  /** Settings for the family's driver from a URL, passed on as it is. */
  settingsFromUrl(url: string): Readonly<Record<string, unknown>>;
  /**
   * Settings found in the environment by the family's own convention (libpq's PG* variables),
   * with where they came from; undefined when the environment names none.
   */
  fromEnvironment?(
    env: NodeJS.ProcessEnv,
  ): { config: Readonly<Record<string, unknown>>; source: string } | undefined;
  /** Opens one connection of the CLI's own. */
  connect(settings: ConnectionSettings, applicationName: string): Promise<CliDatabase>;
}
