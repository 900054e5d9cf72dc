import { InvalidOptionError } from '../errors.js';
import { readKnexfile } from './knexfile.js';

/** The database family the CLI talks to: it decides the driver and the lock SQL. */
export type CliDialect = 'postgres' | 'mysql';

/** Where the CLI's connection comes from, resolved: the driver settings and their origin. */
export interface ConnectionSettings {
  readonly dialect: CliDialect;
  /**
   * The driver's own settings: a `pg` ClientConfig (`{ connectionString }`, a knexfile's
   * connection object, or `{}` so that pg reads the PG* variables) or mysql2 ConnectionOptions
   * (`{ uri }` or a knexfile's connection object).
   */
  readonly config: Readonly<Record<string, unknown>>;
  /** Where the settings were found, for messages: `--url`, `DATABASE_URL`, `knexfile …`. */
  readonly source: string;
}

/** The connection options of the command line, as parsed. */
export interface ConnectionOptions {
  readonly url?: string;
  readonly knexfile?: string;
  readonly env?: string;
}

const SCHEMES: Readonly<Record<string, CliDialect>> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
};

/**
 * The libpq variables that say where or as whom to connect. Any of them set means PostgreSQL:
 * no other database has such a convention. Variables that only tune a connection (PGSSLMODE,
 * PGAPPNAME, PGCONNECT_TIMEOUT, PGOPTIONS) apply when they are set, but do not choose it.
 */
const LIBPQ_ADDRESS_VARIABLES = ['PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE'] as const;

const NOTHING_FOUND =
  'No database settings: pass --url (postgres://… or mysql://…) or --knexfile, or set ' +
  'DATABASE_URL, or the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.';

/**
 * Finds the connection settings: `--url` or `--knexfile` (with `--env`), else `DATABASE_URL`,
 * else PostgreSQL's libpq variables (PGHOST, PGUSER, …), which pg reads itself.
 *
 * @example
 * ```ts
 * await resolveConnection({}, { PGHOST: '/var/run/postgresql', PGDATABASE: 'app' });
 * // { dialect: 'postgres', config: {}, source: 'the PG* environment variables (PGHOST, PGDATABASE)' }
 * ```
 */
export async function resolveConnection(
  options: ConnectionOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ConnectionSettings> {
  if (options.url !== undefined && options.knexfile !== undefined) {
    throw new InvalidOptionError('Pass either --url or --knexfile, not both.');
  }
  if (options.env !== undefined && options.knexfile === undefined) {
    throw new InvalidOptionError(
      `--env ${options.env} selects an environment of a knexfile: pass --knexfile <path> too.`,
    );
  }
  if (options.url !== undefined) return fromUrl(options.url, '--url');
  if (options.knexfile !== undefined) return readKnexfile(options.knexfile, options.env, env);
  if (env.DATABASE_URL) return fromUrl(env.DATABASE_URL, 'DATABASE_URL');
  const libpq = LIBPQ_ADDRESS_VARIABLES.filter((name) => env[name]);
  if (libpq.length > 0) {
    return {
      dialect: 'postgres',
      config: {},
      source: `the PG* environment variables (${libpq.join(', ')})`,
    };
  }
  throw new InvalidOptionError(NOTHING_FOUND);
}

/**
 * Settings from a database URL. The URL goes to the driver as it is, so that whatever the
 * driver accepts works: `postgresql://user@/db?host=/var/run/postgresql`,
 * `postgres://%2Fvar%2Frun%2Fpostgresql/db`, `mysql://user@localhost/db?socketPath=/run/…`.
 */
function fromUrl(url: string, source: string): ConnectionSettings {
  const dialect = dialectOfUrl(url, source);
  return {
    dialect,
    config: dialect === 'postgres' ? { connectionString: url } : { uri: url },
    source,
  };
}

/** Which database a URL names, from its scheme alone. */
function dialectOfUrl(url: string, source = 'the database URL'): CliDialect {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw new InvalidOptionError(
      `${source} is not a database URL: pass e.g. postgres://user:pass@host:5432/db or ` +
        'mysql://user:pass@host:3306/db.',
    );
  }
  const dialect = SCHEMES[scheme];
  if (!dialect) {
    throw new InvalidOptionError(
      `The URL scheme "${scheme}:" (from ${source}) is not supported: use postgres://, ` +
        'postgresql://, mysql:// or mariadb://.',
    );
  }
  return dialect;
}
