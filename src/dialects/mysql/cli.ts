/** How the command line reaches MySQL and MariaDB: URLs, knexfile clients, mysql2. */
import type { DialectCli } from '../module.js';

export const mysqlCli: DialectCli = {
  urlSchemes: ['mysql', 'mariadb'],
  knexClients: ['mysql', 'mysql2', 'mariadb'],
  driver: 'mysql2',
  settingsFromUrl: (url) => ({ uri: url }),
};
