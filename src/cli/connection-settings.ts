import { dialectModule, dialectModules } from '../dialects/registry.js';
import { InvalidOptionError } from '../errors.js';
import { readKnexfile } from './knexfile.js';
import type { CliDialect, ConnectionSettings } from './settings.js';

export type { CliDialect, ConnectionSettings } from './settings.js';

/** The connection options of the command line, as parsed. */
export interface ConnectionOptions {
  readonly url?: string;
  readonly knexfile?: string;
  readonly env?: string;
}

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
  for (const [dialect, family] of dialectModules()) {
    const found = family.cli.fromEnvironment?.(env);
    if (found) return { dialect, ...found };
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
    config: dialectModule(dialect).cli.settingsFromUrl(url),
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
  const dialect = dialectModules().find(([, family]) =>
    family.cli.urlSchemes.includes(scheme),
  )?.[0];
  if (!dialect) {
    throw new InvalidOptionError(
      `The URL scheme "${scheme}:" (from ${source}) is not supported: use ` + `${knownSchemes()}.`,
    );
  }
  return dialect;
}

/** The URL schemes of every registered family, for messages: "postgres://, …". */
function knownSchemes(): string {
  const schemes = dialectModules().flatMap(([, family]) => family.cli.urlSchemes);
  return schemes.map((scheme) => `${scheme}://`).join(', ');
}
