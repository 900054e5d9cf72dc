/** What the openers of `open.ts` share: their options, their result, loading a driver package. */
import { UnsupportedTargetError } from '../errors.js';

/** One opened connection: a target for createLock and inspectLock, and how to close it. */
export interface OpenedConnection {
  /** A pg Client or a mysql2 connection. */
  readonly target: object;
  /** "PostgreSQL at host:port/db", or the socket — where it connects, without credentials. */
  readonly description: string;
  close(): Promise<void>;
}

/** What opening a connection needs besides the driver's settings. */
export interface OpenOptions {
  /** The connection's name on the server, where the driver can give one (pg). */
  readonly applicationName: string;
  /** Milliseconds to wait for the connection before giving up. */
  readonly connectTimeoutMs: number;
  /** The error to throw when the driver refuses the settings before connecting. */
  readonly invalid: (err: unknown) => Error;
  /**
   * Open a small pool instead of one connection: for what needs several connections at once (a
   * semaphore waits on all its slots). Its target is then the pool.
   */
  readonly pool?: boolean;
}

/** How many connections a pool of {@link OpenOptions.pool} keeps at most. */
export const OPENED_POOL_MAX = 2;

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

/** `host:port` for messages, with an IPv6 host in brackets. */
export function hostAndPort(host: string, port: number | undefined): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === undefined ? shown : `${shown}:${port}`;
}
