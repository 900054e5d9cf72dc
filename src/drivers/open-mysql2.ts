/** Opens a mysql2 connection of the process's own: a timeout, keepalive. */
import { databaseError } from '../errors.js';
import {
  defaultExport,
  hostAndPort,
  importDriver,
  OPENED_POOL_MAX,
  type OpenedConnection,
  type OpenOptions,
} from './opening.js';

export async function openMysql2Connection(
  config: Readonly<Record<string, unknown>>,
  options: OpenOptions,
): Promise<OpenedConnection> {
  const mysql = defaultExport(await importDriver('mysql2', 'MySQL', () => import('mysql2')));
  if (options.pool) return openMysql2Pool(mysql, config, options);
  let conn: ReturnType<typeof mysql.createConnection>;
  try {
    conn = mysql.createConnection({
      connectTimeout: options.connectTimeoutMs,
      enableKeepAlive: true,
      ...config,
    });
  } catch (err) {
    throw options.invalid(err);
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
    target: conn,
    description,
    close: () =>
      new Promise<void>((resolve) => {
        conn.end(() => resolve());
      }),
  };
}

/** A small mysql2 pool instead of one connection (see `OpenOptions.pool`). */
async function openMysql2Pool(
  mysql: typeof import('mysql2'),
  config: Readonly<Record<string, unknown>>,
  options: OpenOptions,
): Promise<OpenedConnection> {
  let pool: ReturnType<typeof mysql.createPool>;
  try {
    pool = mysql.createPool({
      connectTimeout: options.connectTimeoutMs,
      enableKeepAlive: true,
      ...config,
      connectionLimit: OPENED_POOL_MAX,
    });
  } catch (err) {
    throw options.invalid(err);
  }
  const {
    host = 'localhost',
    port,
    socketPath,
    database = '',
  } = (
    pool as unknown as { config: { connectionConfig: Record<string, string | number | undefined> } }
  ).config.connectionConfig;
  const description = socketPath
    ? `MySQL at ${String(socketPath)}, database ${String(database)}`
    : `MySQL at ${hostAndPort(String(host), port === undefined ? undefined : Number(port))}/${String(database)}`;
  pool.on('connection', (pooled) => pooled.on('error', () => undefined));
  const end = () => new Promise<void>((resolve) => pool.end(() => resolve()));
  try {
    await new Promise<void>((resolve, reject) =>
      pool.query('SELECT 1', (err) => (err ? reject(err) : resolve())),
    );
  } catch (err) {
    await end();
    throw databaseError(`Connecting to ${description}`, err);
  }
  return { target: pool, description, close: end };
}
