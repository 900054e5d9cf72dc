import type { DialectModule } from '../module.js';
import { mysqlCli } from './cli.js';
import { mysqlDialect } from './dialect.js';
import { MysqlLock } from './lock.js';

/** MySQL and MariaDB named locks. */
export const mysqlModule: DialectModule<string, MysqlLock> = {
  dialect: mysqlDialect,
  dialectFor: () => mysqlDialect,
  createLock: (parts) => new MysqlLock(parts),
  cli: mysqlCli,
};
