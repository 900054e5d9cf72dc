/** How the command line reaches PostgreSQL: URLs, knexfile clients, libpq's variables, pg. */
import type { DialectCli } from '../module.js';

/**
 * The libpq variables that say where or as whom to connect. Any of them set means PostgreSQL:
 * no other database has such a convention. Variables that only tune a connection (PGSSLMODE,
 * PGAPPNAME, PGCONNECT_TIMEOUT, PGOPTIONS) apply when they are set, but do not choose it.
 */
const LIBPQ_ADDRESS_VARIABLES = ['PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE'] as const;

export const postgresCli: DialectCli = {
  urlSchemes: ['postgres', 'postgresql'],
  knexClients: ['pg', 'postgres', 'postgresql', 'pgnative'],
  driver: 'pg',
  settingsFromUrl: (url) => ({ connectionString: url }),
  fromEnvironment(env) {
    const libpq = LIBPQ_ADDRESS_VARIABLES.filter((name) => env[name]);
    if (libpq.length === 0) return undefined;
    // pg reads the variables itself.
    return { config: {}, source: `the PG* environment variables (${libpq.join(', ')})` };
  },
};
