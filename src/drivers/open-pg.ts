/** Opens a pg Client of the process's own: libpq's defaults, a timeout, keepalive. */
import { userInfo } from 'node:os';
import { databaseError } from '../errors.js';
import {
  defaultExport,
  hostAndPort,
  importDriver,
  OPENED_POOL_MAX,
  type OpenedConnection,
  type OpenOptions,
} from './opening.js';

export async function openPgConnection(
  config: Readonly<Record<string, unknown>>,
  options: OpenOptions,
): Promise<OpenedConnection> {
  const pg = defaultExport(await importDriver('pg', 'PostgreSQL', () => import('pg')));
  // libpq's default user is the operating system's; pg's is $USER, which cron may not set.
  pg.defaults.user ??= osUser();
  let client: InstanceType<typeof pg.Client>;
  try {
    // pg fills in what the settings leave out from PGHOST, PGPORT, PGUSER, … as libpq does.
    client = new pg.Client(
      settingsOf(config, options) as ConstructorParameters<typeof pg.Client>[0],
    );
  } catch (err) {
    throw options.invalid(err);
  }
  const { host, port, database = '' } = client;
  const description = host.startsWith('/')
    ? `PostgreSQL at ${host}/.s.PGSQL.${port}, database ${database}`
    : `PostgreSQL at ${hostAndPort(host, port)}/${database}`;
  if (options.pool) {
    // The same settings: the pool's clients take PG* defaults as the client above did.
    const pool = new pg.Pool({
      ...settingsOf(config, options),
      max: OPENED_POOL_MAX,
    } as ConstructorParameters<typeof pg.Pool>[0]);
    pool.on('error', () => undefined);
    try {
      await pool.query('SELECT 1');
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw databaseError(`Connecting to ${description}`, err);
    }
    return { target: pool, description, close: () => pool.end().catch(() => undefined) };
  }
  // The lock reports a dying connection through lock.signal; this only keeps it from crashing.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw databaseError(`Connecting to ${description}`, err);
  }
  return { target: client, description, close: () => client.end().catch(() => undefined) };
}

function settingsOf(config: Readonly<Record<string, unknown>>, options: OpenOptions) {
  return {
    connectionTimeoutMillis: options.connectTimeoutMs,
    keepAlive: true,
    ...config,
    fallback_application_name: options.applicationName.slice(0, 63),
  };
}

/** The operating system's user name, as libpq defaults to it. */
function osUser(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}
