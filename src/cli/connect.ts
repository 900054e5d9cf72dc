import { databaseError, InvalidOptionError, UnsupportedTargetError } from '../errors.js';

/** One connection of the CLI's own, opened from a URL; the lock runs on it directly. */
export interface CliDatabase {
  readonly dialect: 'postgres' | 'mysql';
  /** A pg Client or a mysql2 connection: a target for createLock and inspectLock. */
  readonly target: object;
  /** "PostgreSQL at host:port/db" — the URL without credentials, for messages. */
  readonly description: string;
  close(): Promise<void>;
}

const SCHEMES: Readonly<Record<string, CliDatabase['dialect']>> = {
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
  'mysql:': 'mysql',
  'mariadb:': 'mysql',
};

const CONNECT_TIMEOUT_MS = 10_000;

/** Which database a URL names, from its scheme. */
export function dialectOfUrl(url: string): CliDatabase['dialect'] {
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    throw new InvalidOptionError(
      'The database URL is not a valid URL: pass --url (or set DATABASE_URL) to e.g. ' +
        'postgres://user:pass@host:5432/db or mysql://user:pass@host:3306/db.',
    );
  }
  const dialect = SCHEMES[scheme];
  if (!dialect) {
    throw new InvalidOptionError(
      `The database URL scheme "${scheme}" is not supported: use postgres://, postgresql://, ` +
        'mysql:// or mariadb://.',
    );
  }
  return dialect;
}

function describeUrl(url: string, dialect: CliDatabase['dialect']): string {
  const { host, pathname } = new URL(url);
  return `${dialect === 'postgres' ? 'PostgreSQL' : 'MySQL'} at ${host}${pathname}`;
}

/** Imports an optional peer dependency, saying how to install it when it is missing. */
async function importDriver<T>(name: 'pg' | 'mysql2', load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UnsupportedTargetError(
        `The database URL needs the "${name}" package, which is not installed where knex-dlock ` +
          `can load it: run \`npm install ${name}\` next to knex-dlock.`,
      );
    }
    throw err;
  }
}

/** A CommonJS package's exports, whether `import()` ran as ESM (under `default`) or as require. */
function defaultExport<T>(mod: T): T {
  return (mod as unknown as { default?: T }).default ?? mod;
}

/** Opens one connection to the database at `url`, named `applicationName` where possible. */
export async function connect(url: string, applicationName: string): Promise<CliDatabase> {
  const dialect = dialectOfUrl(url);
  const description = describeUrl(url, dialect);
  return dialect === 'postgres'
    ? connectPostgres(url, applicationName, description)
    : connectMysql(url, description);
}

async function connectPostgres(url: string, applicationName: string, description: string) {
  const mod = await importDriver('pg', () => import('pg'));
  const pg = defaultExport(mod);
  // A name in the URL wins over this one: pg lets connection-string settings override.
  const client = new pg.Client({
    connectionString: url,
    application_name: applicationName.slice(0, 63),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
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

async function connectMysql(url: string, description: string) {
  const mod = await importDriver('mysql2', () => import('mysql2'));
  const mysql = defaultExport(mod);
  const conn = mysql.createConnection({
    uri: url,
    connectTimeout: CONNECT_TIMEOUT_MS,
    enableKeepAlive: true,
  });
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
