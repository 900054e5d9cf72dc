import { InvalidOptionError } from '../errors.js';
import { dialectModule, type DialectName } from '../dialects/registry.js';
import { openConnection } from '../drivers/open.js';
import type { ConnectionSettings } from './settings.js';

/** One connection of the CLI's own, opened from resolved settings; the lock runs on it. */
export interface CliDatabase {
  readonly dialect: DialectName;
  /**
   * A pg Client or a mysql2 connection (a small pool of them with `pool`): a target for
   * createLock, createSemaphore and inspectLock.
   */
  readonly target: object;
  /** "PostgreSQL at host:port/db", or the socket — where it connects, without credentials. */
  readonly description: string;
  close(): Promise<void>;
}

/** How long the CLI waits for a connection before giving up. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** The driver refused the settings before connecting (a malformed URL, for instance). */
export function invalidSettings(settings: ConnectionSettings, err: unknown): InvalidOptionError {
  const detail = err instanceof Error ? err.message : String(err);
  return new InvalidOptionError(
    `The connection settings from ${settings.source} are not valid: ${detail}. ` +
      'Check them against the examples in `knex-dlock run --help`.',
  );
}

/**
 * Opens one connection with `settings`, through the driver their database family names. On
 * PostgreSQL it is named `applicationName` unless the settings (or PGAPPNAME) name it, as psql
 * names its own.
 */
export async function connect(
  settings: ConnectionSettings,
  applicationName: string,
  pool = false,
): Promise<CliDatabase> {
  const opened = await openConnection(dialectModule(settings.dialect).cli.driver, settings.config, {
    applicationName,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    invalid: (err) => invalidSettings(settings, err),
    pool,
  });
  return { dialect: settings.dialect, ...opened };
}
