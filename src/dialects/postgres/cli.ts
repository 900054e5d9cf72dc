/** How the command line reaches PostgreSQL: URLs, knexfile clients, libpq's variables, pg. */
import {
  CONNECT_TIMEOUT_MS,
  defaultExport,
  hostAndPort,
  importDriver,
  invalidSettings,
  osUser,
  type CliDatabase,
} from '../../cli/connect.js';
import type { ConnectionSettings } from '../../cli/connection-settings.js';
import { databaseError } from '../../errors.js';
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
  settingsFromUrl: (url) => ({ connectionString: url }),
  fromEnvironment(env) {
    const libpq = LIBPQ_ADDRESS_VARIABLES.filter((name) => env[name]);
    if (libpq.length === 0) return undefined;
    // pg reads the variables itself.
    return { config: {}, source: `the PG* environment variables (${libpq.join(', ')})` };
  },
  connect: connectPostgres,
};

async function connectPostgres(
  settings: ConnectionSettings,
  applicationName: string,
): Promise<CliDatabase> {
  const pg = defaultExport(await importDriver('pg', 'PostgreSQL', () => import('pg')));
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
    dialect: 'postgres',
    target: client,
    description,
    close: () => client.end().catch(() => undefined),
  };
}
