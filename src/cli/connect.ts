import { userInfo } from 'node:os';
import { InvalidOptionError, UnsupportedTargetError } from '../errors.js';
import { dialectModule, type DialectName } from '../dialects/registry.js';
import type { ConnectionSettings } from './connection-settings.js';

/** One connection of the CLI's own, opened from resolved settings; the lock runs on it. */
export interface CliDatabase {
  readonly dialect: DialectName;
  /** A pg Client or a mysql2 connection: a target for createLock and inspectLock. */
  readonly target: object;
  /** "PostgreSQL at host:port/db", or the socket — where it connects, without credentials. */
  readonly description: string;
  close(): Promise<void>;
}

/** How long the CLI waits for a connection before giving up. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** Imports an optional peer dependency, saying how to install it when it is missing. */
export async function importDriver<T>(
  name: string,
  title: string,
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UnsupportedTargetError(
        `Connecting to ${title} needs the "${name}" package, ` +
          'which is not installed where knex-dlock can load it: run ' +
          `\`npm install ${name}\` next to knex-dlock.`,
      );
    }
    throw err;
  }
}

/** A CommonJS package's exports, whether `import()` ran as ESM (under `default`) or as require. */
export function defaultExport<T>(mod: T): T {
  return (mod as unknown as { default?: T }).default ?? mod;
}

/** The driver refused the settings before connecting (a malformed URL, for instance). */
export function invalidSettings(settings: ConnectionSettings, err: unknown): InvalidOptionError {
  const detail = err instanceof Error ? err.message : String(err);
  return new InvalidOptionError(
    `The connection settings from ${settings.source} are not valid: ${detail}. ` +
      'Check them against the examples in `knex-dlock run --help`.',
  );
}

/**
 * Opens one connection with `settings`, through the driver of their database family. On
 * PostgreSQL it is named `applicationName` unless the settings (or PGAPPNAME) name it, as psql
 * names its own.
 */
export function connect(
  settings: ConnectionSettings,
  applicationName: string,
): Promise<CliDatabase> {
  return dialectModule(settings.dialect).cli.connect(settings, applicationName);
}

/** The operating system's user name, as libpq defaults to it. */
export function osUser(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

/** `host:port` for messages, with an IPv6 host in brackets. */
export function hostAndPort(host: string, port: number | undefined): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === undefined ? shown : `${shown}:${port}`;
}
