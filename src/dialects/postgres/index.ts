import type { DialectModule } from '../module.js';
import { postgresCli } from './cli.js';
import { postgresDialect, unpreparedPostgresDialect } from './dialect.js';
import { PostgresLock } from './lock.js';

/** PostgreSQL advisory locks. */
export const postgresModule: DialectModule<bigint, PostgresLock> = {
  dialect: postgresDialect,
  dialectFor: (options) =>
    options.preparedStatements === false ? unpreparedPostgresDialect : postgresDialect,
  createLock: (parts) => new PostgresLock(parts),
  cli: postgresCli,
};
