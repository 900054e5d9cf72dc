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
  'PoolClient or Pool, or a mysql2 connection or pool (callback or promise API)';

/** What createLock learned about its target. */
export interface DetectedTarget {
  readonly driver: Driver;
  /** Whether the target hands out connections of its own (a pool or knex instance). */
  readonly pooled: boolean;
  /** Whether locks on it can ever be inside a transaction (needed by `xact`). */
  readonly transactional: boolean;
}

/** Finds out what `target` is by looking at it; throws ERR_DLOCK_UNSUPPORTED_TARGET. */
export function detectTarget(target: unknown, connection: 'pool' | 'dedicated'): DetectedTarget {
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
      return {
        driver: knexTransactionDriver(target, driverName),
        pooled: false,
        transactional: true,
      };
    }
    return {
      driver: knexDriver(target, driverName, connection),
      pooled: true,
      transactional: false,
    };
  }
  const callbackMysql = unwrapMysqlPromise(target);
  const flavour = callbackMysql ? 'mysql2/promise' : 'mysql2';
  const mysqlTarget = callbackMysql ?? target;
  if (isPgPool(target)) {
    return { driver: pgPoolDriver(target, connection), pooled: true, transactional: false };
  }
  if (isPgClient(target)) {
    return { driver: pgClientDriver(target), pooled: false, transactional: true };
  }
  if (isMysqlPool(mysqlTarget)) {
    return {
      driver: mysqlPoolDriver(mysqlTarget, flavour, connection),
      pooled: true,
      transactional: false,
    };
  }
  if (isMysqlConnection(mysqlTarget)) {
    return {
      driver: mysqlConnectionDriver(mysqlTarget, flavour),
      pooled: false,
      transactional: false,
    };
  }
  throw new UnsupportedTargetError(
    `knex-dlock cannot take a lock through ${describe(target)}. Supported: ${SUPPORTED}.`,
  );
}
