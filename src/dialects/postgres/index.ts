import type { DialectModule } from '../module.js';
import { postgresCli } from './cli.js';
import { postgresDialect, unpreparedPostgresDialect } from './dialect.js';

/** PostgreSQL advisory locks. */
export const postgresModule: DialectModule<bigint> = {
  dialect: postgresDialect,
  dialectFor: (options) =>
    options.preparedStatements === false ? unpreparedPostgresDialect : postgresDialect,
  cli: postgresCli,
};
