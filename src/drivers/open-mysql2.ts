/** Opens a mysql2 connection of the process's own: a timeout, keepalive. */
import { databaseError } from '../errors.js';
import {
  defaultExport,
  hostAndPort,
  importDriver,
  type OpenedConnection,
  type OpenOptions,
} from './opening.js';

export async function openMysql2Connection(
  config: Readonly<Record<string, unknown>>,
  options: OpenOptions,
): Promise<OpenedConnection> {
  const mysql = defaultExport(await importDriver('mysql2', 'MySQL', () => import('mysql2')));
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
