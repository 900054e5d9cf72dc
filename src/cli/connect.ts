import { userInfo } from 'node:os';
import { databaseError, InvalidOptionError, UnsupportedTargetError } from '../errors.js';
import type { CliDialect, ConnectionSettings } from './connection-settings.js';

/** One connection of the CLI's own, opened from resolved settings; the lock runs on it. */
export interface CliDatabase {
  readonly dialect: CliDialect;
  /** A pg Client or a mysql2 connection: a target for createLock and inspectLock. */
  readonly target: object;
  /** "PostgreSQL at host:port/db", or the socket — where it connects, without credentials. */
  readonly description: string;
  close(): Promise<void>;
}

const CONNECT_TIMEOUT_MS = 10_000;

/** Imports an optional peer dependency, saying how to install it when it is missing. */
async function importDriver<T>(name: 'pg' | 'mysql2', load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UnsupportedTargetError(
        `Connecting to ${name === 'pg' ? 'PostgreSQL' : 'MySQL'} needs the "${name}" package, ` +
          'which is not installed where knex-dlock can load it: run ' +
          `\`npm install ${name}\` next to knex-dlock.`,
      );
    }
    throw err;
  }
}

/** A CommonJS package's exports, whether `import()` ran as ESM (under `default`) or as require. */
function defaultExport<T>(mod: T): T {
  return (mod as unknown as { default?: T }).default ?? mod;
}

/** The driver refused the settings before connecting (a malformed URL, for instance). */
function invalidSettings(settings: ConnectionSettings, err: unknown): InvalidOptionError {
  const detail = err instanceof Error ? err.message : String(err);
  return new InvalidOptionError(
    `The connection settings from ${settings.source} are not valid: ${detail}. ` +
      'Check them against the examples in `knex-dlock run --help`.',
  );
}

/**
 * Opens one connection with `settings`. On PostgreSQL it is named `applicationName` unless the
 * settings (or PGAPPNAME) name it, as psql names its own.
 */
export async function connect(
  settings: ConnectionSettings,
  applicationName: string,
): Promise<CliDatabase> {
  return settings.dialect === 'postgres'
    ? connectPostgres(settings, applicationName)
    : connectMysql(settings);
}

function osUser(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

function hostAndPort(host: string, port: number | undefined): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === undefined ? shown : `${shown}:${port}`;
}

async function connectPostgres(settings: ConnectionSettings, applicationName: string) {
  const pg = defaultExport(await importDriver('pg', () => import('pg')));
  // libpq's default user is the operating system's; pg's is $USER, which cron may not set.
  pg.defaults.user ??= osUser();
  let client: InstanceType<typeof pg.Client>;
  try {
    // pg fills in what the settings leave out from PGHOST, PGPORT, PGUSER, … as libpq does.
    client = new pg.Client({
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      ...settings.config,
      fallback_application_name: applicationName.slice(0, 63),
    } as ConstructorParameters<typeof pg.Client>[0]);
  } catch (err) {
    throw invalidSettings(settings, err);
  }
  const { host, port, database = '' } = client;
  const description = host.startsWith('/')
    ? `PostgreSQL at ${host}/.s.PGSQL.${port}, database ${database}`
    : `PostgreSQL at ${hostAndPort(host, port)}/${database}`;
  // The lock reports a dying connection through lock.signal; this only keeps it from crashing.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw databaseError(`Connecting to ${description}`, err);
  }
  return {
    dialect: 'postgres' as const,
    target: client,
    description,
    close: () => client.end().catch(() => undefined),
  };
}

async function connectMysql(settings: ConnectionSettings) {
  const mysql = defaultExport(await importDriver('mysql2', () => import('mysql2')));
  let conn: ReturnType<typeof mysql.createConnection>;
  try {
    conn = mysql.createConnection({
      connectTimeout: CONNECT_TIMEOUT_MS,
      enableKeepAlive: true,
      ...settings.config,
    });
  } catch (err) {
    throw invalidSettings(settings, err);
  }
  const { host = 'localhost', port, socketPath, database = '' } = conn.config;
  const description = socketPath
    ? `MySQL at ${socketPath}, database ${database}`
    : `MySQL at ${hostAndPort(host, port)}/${database}`;
  conn.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) =>
      conn.connect((err) => (err ? reject(err) : resolve())),
    );
  } catch (err) {
    conn.destroy();
    throw databaseError(`Connecting to ${description}`, err);
  }
  return {
    dialect: 'mysql' as const,
    target: conn,
    description,
    close: () =>
      new Promise<void>((resolve) => {
        conn.end(() => resolve());
      }),
  };
}
