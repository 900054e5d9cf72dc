/** How the command line reaches MySQL and MariaDB: URLs, knexfile clients, mysql2. */
import {
  CONNECT_TIMEOUT_MS,
  defaultExport,
  hostAndPort,
  importDriver,
  invalidSettings,
  type CliDatabase,
} from '../../cli/connect.js';
import type { ConnectionSettings } from '../../cli/connection-settings.js';
import { databaseError } from '../../errors.js';
import type { DialectCli } from '../module.js';

export const mysqlCli: DialectCli = {
  urlSchemes: ['mysql', 'mariadb'],
  knexClients: ['mysql', 'mysql2', 'mariadb'],
  settingsFromUrl: (url) => ({ uri: url }),
  connect: (settings) => connectMysql(settings),
};

async function connectMysql(settings: ConnectionSettings): Promise<CliDatabase> {
  const mysql = defaultExport(await importDriver('mysql2', 'MySQL', () => import('mysql2')));
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
    dialect: 'mysql',
    target: conn,
    description,
    close: () =>
      new Promise<void>((resolve) => {
        conn.end(() => resolve());
      }),
  };
}
