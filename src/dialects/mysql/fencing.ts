import type { SqlSession } from '../../drivers/types.js';
import { databaseError, FencingUnavailableError } from '../../errors.js';
import { errorNumber, type FencingStore } from '../dialect.js';

/** The table of per-name counters, in the connection's current database. */
export const FENCING_TABLE = 'knex_dlock_fencing';

type Flavor = 'mysql' | 'mariadb' | undefined;

const ER_NO_SUCH_TABLE = 1146;
/** The user may not INSERT or UPDATE the table. */
const ER_TABLEACCESS_DENIED = 1142;
/** SERVER_STATUS_IN_TRANS, in the status flags of every OK packet. */
const IN_TRANSACTION = 1;
/** mysqljs cannot parse an OK packet whose insert id is 2^53 or more (unless supportBigNumbers). */
const PRECISION_EXCEEDED = 'PARSER_JS_PRECISION_RANGE_EXCEEDED';

/**
 * The fencing table's statement. One counter must stand for exactly one lock on the server, so
 * the key is the lock's own key on the server, as bytes, and compared as bytes (VARBINARY has no
 * pad: `'a'` and `'a '` stay two rows, as with `utf8mb4_nopad_bin` but unlike `utf8mb4_bin`).
 * What differs by flavour is how a name becomes that key ({@link keyExpression}), so one table
 * serves both. 192 bytes is MariaDB's limit on a lock name (error 1059 beyond it) and 64
 * utf8mb3 characters, MySQL's.
 */
export const MYSQL_FENCING_SETUP =
  `CREATE TABLE IF NOT EXISTS ${FENCING_TABLE} ` +
  '(name VARBINARY(192) NOT NULL PRIMARY KEY, token BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB';

export const mysqlFencingStore: FencingStore = {
  what: `table ${FENCING_TABLE}`,
  setup: MYSQL_FENCING_SETUP,
  grant: `GRANT SELECT, INSERT, UPDATE ON ${FENCING_TABLE} TO <user>`,
};

/**
 * How a lock name becomes the key GET_LOCK locks, which the two servers make differently.
 * - MariaDB (10.11, by experiment) keys the lock with the argument's bytes as the connection
 *   sent them: 'Foo'/'foo', 'a'/'a ', 'é'/'e', 'ß'/'ss' are two locks each, and an emoji name
 *   sent by mysqljs (a utf8mb3 connection) is the same lock as from mysql2 (utf8mb4). Its manual
 *   says names are case-insensitive; the server disagrees. The bytes go in unconverted: through
 *   a utf8mb4 column, mysqljs's emoji name fails (1366). (MariaDB cuts a name at NUL, which
 *   mysqlName never sends.)
 * - MySQL 8 (as read from its source, sql/item_func.cc; not checked against a server) converts the
 *   name to utf8mb3, refusing what does not convert (3057), and lowercases it with
 *   utf8mb3_general_ci's case map before keying the lock by its bytes: case-insensitive, accent-
 *   and space-sensitive.
 *   utf8mb4_general_ci has that same case map (İ lowers to i, which no _0900_as_ci collation
 *   matches) and agrees with utf8mb3 on every name MySQL accepts.
 * An unknown flavour takes MySQL's key: on MariaDB it would only join counters of distinct
 * locks, which keeps every lock's tokens increasing; the reverse would not.
 */
function keyExpression(flavor: Flavor): string {
  return flavor === 'mariadb' ? '?' : 'LOWER(CONVERT(? USING utf8mb4) COLLATE utf8mb4_general_ci)';
}

/** What reads the counter back when the OK packet could not carry it exactly. */
const READ_BACK = 'SELECT CAST(LAST_INSERT_ID() AS CHAR) AS token';

/** The statement that increments (or starts at 1) the counter and leaves it in the insert id. */
function incrementSql(flavor: Flavor): string {
  return (
    `INSERT INTO ${FENCING_TABLE} (name, token) ` +
    `VALUES (${keyExpression(flavor)}, LAST_INSERT_ID(1)) ` +
    'ON DUPLICATE KEY UPDATE token = LAST_INSERT_ID(token + 1)'
  );
}

/**
 * The next fencing token of `name`, as GET_LOCK takes it: 1 for a name never fenced, then one
 * more each call; the session must hold the lock of `name`. The table is created on first use
 * if it is missing. Inside a transaction (or with autocommit off, where the write opens one) it
 * throws FencingUnavailableError: the increment would roll back with the caller's transaction
 * and the next grant would reuse the token, and creating the table would commit it. The OK
 * packet's status flags say so, on MySQL and MariaDB alike.
 */
export async function nextMysqlFencingToken(
  session: SqlSession,
  name: string,
  flavor: Flavor,
  inTransaction?: boolean,
): Promise<bigint> {
  const sql = incrementSql(flavor);
  try {
    // Asked before the increment: written inside the caller's transaction, the counter row
    // would stay locked until it ends, holding up every other grant of the name.
    if (inTransaction) throw notInTransactions();
    if (inTransaction === undefined) await runOutsideTransaction(session, 'DO 0');
    try {
      return await increment(session, sql, name);
    } catch (err) {
      if (errorNumber(err) !== ER_NO_SUCH_TABLE) throw err;
    }
    await createTable(session);
    return await increment(session, sql, name);
  } catch (err) {
    if (err instanceof FencingUnavailableError) throw err;
    if (errorNumber(err) === ER_TABLEACCESS_DENIED) {
      throw new FencingUnavailableError(
        `This user may not write the table ${FENCING_TABLE} that fencing tokens come from ` +
          '(the server says so before it says whether the table exists). Have a user who may ' +
          `run \`${MYSQL_FENCING_SETUP}\` and then \`${mysqlFencingStore.grant}\`; ` +
          '`knex-dlock setup-fencing` or `setUpFencing(target)` runs the first.',
        { cause: err },
      );
    }
    throw databaseError('Taking a fencing token', err);
  }
}

/**
 * Runs `sql` (a statement without a result set) and resolves its insert id; throws
 * FencingUnavailableError when its OK packet says the session is inside a transaction.
 */
async function runOutsideTransaction(
  session: SqlSession,
  sql: string,
  params?: unknown[],
): Promise<unknown> {
  const [rows] = await session.query(sql, params);
  const status = rows?.[0]?.serverStatus;
  if (typeof status === 'number' && (status & IN_TRANSACTION) !== 0) throw notInTransactions();
  return rows?.[0]?.insertId;
}

function notInTransactions(): FencingUnavailableError {
  return new FencingUnavailableError(
    'Fencing tokens cannot be taken inside a transaction on MySQL / MariaDB (nor with ' +
      'autocommit off): the counter would roll back with the transaction and a later grant ' +
      'would reuse the token. Lock on a connection outside transactions (the default ' +
      "'multiplexed' lock connections of a pool or knex instance are).",
  );
}

async function createTable(session: SqlSession): Promise<void> {
  const setup = MYSQL_FENCING_SETUP;
  try {
    await session.query(setup);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new FencingUnavailableError(
      `Fencing tokens need the table ${FENCING_TABLE}, which is missing and could not be ` +
        `created (${detail}). Create it once as a user who may: ${setup}; ` +
        '`knex-dlock setup-fencing` or `setUpFencing(target)` runs that statement.',
      { cause: err },
    );
  }
}

/**
 * Runs the increment and reads the counter from the OK packet's insert id, which both drivers
 * give on the insert and the update path: mysql2 as a number, or as a string from 2^53 on (and
 * signed: 2^64 - 1 arrives as -1); mysqljs as a number, failing to parse it from 2^53 on. Where
 * the id is missing or inexact, the statement ran all the same, and LAST_INSERT_ID() has it.
 */
async function increment(session: SqlSession, sql: string, name: string): Promise<bigint> {
  let insertId: unknown;
  try {
    insertId = await runOutsideTransaction(session, sql, [name]);
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code !== PRECISION_EXCEEDED) throw err;
  }
  const token = exactToken(insertId);
  if (token !== undefined) return token;
  const [rows] = await session.query(READ_BACK);
  const readBack = exactToken(rows?.[0]?.token);
  if (readBack !== undefined) return readBack;
  throw new Error(`LAST_INSERT_ID() read back ${String(rows?.[0]?.token)}`);
}

/** A token from an insert id, or undefined where it is not an exact positive integer. */
function exactToken(id: unknown): bigint | undefined {
  let value: bigint | undefined;
  if (typeof id === 'bigint') value = id;
  else if (typeof id === 'number' && Number.isSafeInteger(id)) value = BigInt(id);
  else if (typeof id === 'string' && /^-?\d+$/.test(id)) value = BigInt(id);
  if (value === undefined) return undefined;
  const unsigned = BigInt.asUintN(64, value);
  return unsigned > 0n ? unsigned : undefined;
}
