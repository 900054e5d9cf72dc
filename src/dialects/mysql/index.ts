import type { DialectModule } from '../module.js';
import { mysqlCli } from './cli.js';
import { mysqlDialect } from './dialect.js';

/** MySQL and MariaDB named locks. */
export const mysqlModule: DialectModule<string> = {
  dialect: mysqlDialect,
  dialectFor: () => mysqlDialect,
  cli: mysqlCli,
};
