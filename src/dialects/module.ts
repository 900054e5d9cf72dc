/**
 * What the registry knows of one database family: its dialect, and the plain data the CLI needs
 * to reach it. Each family's folder exports one module; `registry.ts` lists them. The family's
 * lock class lives a floor above the lock's state machine, in `locks/`.
 */
import type { OpenableDriver } from '../drivers/open.js';
import type { Dialect } from './dialect.js';

/** Lock options a family may read when it picks the dialect a lock uses. */
export interface DialectChoice {
  readonly preparedStatements?: boolean | undefined;
}

export interface DialectModule<Key extends bigint | string> {
  /** The dialect of inspection and the CLI; locks may use a variant (see `dialectFor`). */
  readonly dialect: Dialect<Key>;
  /** The dialect a lock created with these options uses. */
  dialectFor(options: DialectChoice): Dialect<Key>;
  readonly cli: DialectCli;
}

/** How the command line finds the settings for one family's servers, and which driver opens them. */
export interface DialectCli {
  /** URL schemes that name the family, lower case, without `:`. */
  readonly urlSchemes: readonly string[];
  /** knexfile `client` names that speak to the family. */
  readonly knexClients: readonly string[];
  /** The driver package the CLI opens its own connection with. */
  readonly driver: OpenableDriver;
  /** Settings for the family's driver from a URL, passed on as it is. */
  settingsFromUrl(url: string): Readonly<Record<string, unknown>>;
  /**
   * Settings found in the environment by the family's own convention (libpq's PG* variables),
   * with where they came from; undefined when the environment names none.
   */
  fromEnvironment?(
    env: NodeJS.ProcessEnv,
  ): { config: Readonly<Record<string, unknown>>; source: string } | undefined;
}
