import { UnsupportedTargetError } from '../errors.js';
import { describe } from '../keys.js';
import { isKnex, knexDriver, knexTransactionDriver, supportedKnexDriver } from './knex.js';
import {
  isMysqlConnection,
  isMysqlPool,
  mysqlConnectionDriver,
  mysqlPoolDriver,
  unwrapMysqlPromise,
} from './mysql2.js';
import { isPgClient, isPgPool, pgClientDriver, pgPoolDriver } from './pg.js';
import type { Driver } from './types.js';

const SUPPORTED =
  'a knex instance or transaction (pg, pgnative, mysql, mysql2 clients), a pg Client, ' +
  'PoolClient or Pool (JavaScript or pg.native), or a mysql2 connection or pool (callback or ' +
  'promise API)';

/** Finds out what `target` is by looking at it; throws ERR_DLOCK_UNSUPPORTED_TARGET. */
export function detectTarget(target: unknown): Driver {
  if (isKnex(target)) {
    const driverName = supportedKnexDriver(target);
    if (!driverName) {
      throw new UnsupportedTargetError(
        `knex-dlock received a knex ${target.isTransaction ? 'transaction' : 'instance'} for the ` +
          `"${target.client.driverName ?? 'unknown'}" client, which has no usable advisory or ` +
          `named locks (CockroachDB and Redshift lack them; SQLite, MSSQL and Oracle are not ` +
          `supported). Supported: ${SUPPORTED}.`,
      );
    }
    if (target.isTransaction) {
      return knexTransactionDriver(target, driverName);
    }
    return knexDriver(target, driverName);
  }
  const callbackMysql = unwrapMysqlPromise(target);
  const flavour = callbackMysql ? 'mysql2/promise' : 'mysql2';
  const mysqlTarget = callbackMysql ?? target;
  if (isPgPool(target)) {
    return pgPoolDriver(target);
  }
  if (isPgClient(target)) {
    return pgClientDriver(target);
  }
  if (isMysqlPool(mysqlTarget)) {
    return mysqlPoolDriver(mysqlTarget, flavour);
  }
  if (isMysqlConnection(mysqlTarget)) {
    return mysqlConnectionDriver(mysqlTarget, flavour);
  }
  throw new UnsupportedTargetError(
    `knex-dlock cannot take a lock through ${describe(target)}. Supported: ${SUPPORTED}.`,
  );
}
