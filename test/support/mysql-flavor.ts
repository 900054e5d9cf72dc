/**
 * Which MySQL-family server the tests run against, read from the server (`SELECT VERSION()`),
 * never assumed: MariaDB and MySQL 8 differ in GET_LOCK timeouts, deadlock and kill errors, and
 * the case of lock names, and a test that depends on one of them asks for the flavour first.
 */
import mysql from 'mysql2/promise';
import { databaseUrls } from './databases.js';

export type MysqlFlavor = 'mysql' | 'mariadb';

/** The flavour a `VERSION()` string names: MariaDB says so (e.g. `10.11.6-MariaDB`). */
export function flavorOfVersion(version: string): MysqlFlavor {
  return /mariadb/i.test(version) ? 'mariadb' : 'mysql';
}

/** Asks the server behind `query` for its version; `query` resolves the rows of one statement. */
export async function askFlavor(
  query: (sql: string) => Promise<readonly Record<string, unknown>[]>,
): Promise<MysqlFlavor> {
  const rows = await query('SELECT VERSION() AS version');
  return flavorOfVersion(String(rows[0]?.version));
}

let asked: Promise<MysqlFlavor> | undefined;

/** The flavour of the tests' MySQL server (DLOCK_MYSQL_URL, else the local one), asked once. */
export function mysqlServerFlavor(): Promise<MysqlFlavor> {
  asked ??= (async () => {
    const conn = await mysql.createConnection({ uri: (await databaseUrls()).mysql });
    try {
      return await askFlavor(
        async (sql) => (await conn.query(sql))[0] as Record<string, unknown>[],
      );
    } finally {
      await conn.end();
    }
  })();
  return asked;
}
