/**
 * Starts the real CLI with none of the variables that could give it connection settings, so
 * that each test says exactly where its settings come from.
 */
import { CLI_PATH, startNodeScript, type Started } from '../support/processes.js';

/** Every variable the CLI reads its connection from, unset. */
const NO_SETTINGS: Record<string, undefined> = Object.fromEntries(
  [
    'DATABASE_URL',
    'NODE_ENV',
    'PGHOST',
    'PGHOSTADDR',
    'PGPORT',
    'PGUSER',
    'PGPASSWORD',
    'PGDATABASE',
    'PGAPPNAME',
    'PGSSLMODE',
    'PGSERVICE',
  ].map((name) => [name, undefined]),
);

/** Starts `knex-dlock ...args` with `env` as the only connection variables. */
export function startCliWith(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Started {
  return startNodeScript(CLI_PATH, args, { ...NO_SETTINGS, ...env });
}

/** The libpq variables that name the same server, user and database as a postgres:// URL. */
export function libpqVariables(url: string): Record<string, string> {
  const { hostname, port, username, password, pathname } = new URL(url);
  return {
    PGHOST: hostname,
    PGPORT: port || '5432',
    PGUSER: decodeURIComponent(username),
    PGPASSWORD: decodeURIComponent(password),
    PGDATABASE: decodeURIComponent(pathname.slice(1)),
  };
}
