/**
 * Fencing tokens on MySQL/MariaDB (src/dialects/mysql/fencing.ts), against the real server of the
 * test run (DLOCK_MYSQL_URL, else the local one). Scenarios that depend on the flavour ask the
 * server for it; the ones only MariaDB can run (emoji names) skip on MySQL.
 * Two tests drop the fencing table and recreate it before they end.
 */
import { expect } from 'chai';
import { createRequire } from 'node:module';
import mysql2 from 'mysql2';
import {
  FENCING_TABLE,
  MYSQL_FENCING_SETUP,
  nextMysqlFencingToken,
} from '../../src/dialects/mysql/fencing.js';
import { CALLER_OWNED } from '../../src/drivers/lease.js';
import { mysqlLease, type MysqlConnectionLike } from '../../src/drivers/mysql2.js';
import type { Row, SqlSession } from '../../src/drivers/types.js';
import { FencingUnavailableError, LockDatabaseError } from '../../src/errors.js';
import { databaseUrls } from '../support/databases.js';
import { askFlavor, type MysqlFlavor } from '../support/mysql-flavor.js';

/** The older mysql driver (mysqljs), which has no type declarations here. */
const mysqljs = createRequire(import.meta.url)('mysql') as {
  createConnection(url: string): MysqlConnectionLike;
};

type DriverName = 'mysql2' | 'mysqljs';

const NO_DDL_USER = 'dlock_noddl';
const NO_DDL_PASSWORD = 'dlock-noddl-pw';
const TWO_53 = 2n ** 53n;

let nameCounter = 0;
/** A lock name unique to this run, lower case ASCII (the same key on both flavours). */
function uniqueName(label: string): string {
  nameCounter += 1;
  return `fence:${label}:${process.pid}:${Date.now()}:${nameCounter}`;
}

const rowsOf = async (session: SqlSession, sql: string, params?: unknown[]): Promise<Row[]> =>
  (await session.query(sql, params))[0] ?? [];

describe('MySQL fencing tokens (knex_dlock_fencing) on the real server', () => {
  let flavor: MysqlFlavor;
  let url: string;
  const closers: (() => Promise<void>)[] = [];

  /** A session over a connection of `driver`, as the library leases a caller's connection. */
  async function open(driver: DriverName = 'mysql2', at: string = url): Promise<SqlSession> {
    const conn =
      driver === 'mysql2'
        ? (mysql2.createConnection({ uri: at }) as unknown as MysqlConnectionLike)
        : mysqljs.createConnection(at);
    conn.on('error', () => undefined);
    await new Promise<void>((resolve, reject) =>
      conn.connect((err) => (err ? reject(err) : resolve())),
    );
    closers.push(async () => conn.destroy());
    return mysqlLease(conn, CALLER_OWNED).session;
  }

  /** The next token of `name`, taken while holding its lock, as the dialect will. */
  async function fenced(session: SqlSession, name: string): Promise<bigint> {
    const [row] = await rowsOf(session, 'SELECT GET_LOCK(?, 10) AS acquired', [name]);
    expect(row?.acquired).to.equal(1);
    try {
      return await nextMysqlFencingToken(session, name, flavor);
    } finally {
      await rowsOf(session, 'SELECT RELEASE_LOCK(?)', [name]);
    }
  }

  /** Whether the server holds `a` and `b` as one lock: `b` is busy while another session holds `a`. */
  async function oneLock(
    a: string,
    b: string,
    drivers: [DriverName, DriverName],
  ): Promise<boolean> {
    const [holder, asker] = [await open(drivers[0]), await open(drivers[1])];
    expect((await rowsOf(holder, 'SELECT GET_LOCK(?, 0) AS g', [a]))[0]?.g).to.equal(1);
    const [row] = await rowsOf(asker, 'SELECT IS_FREE_LOCK(?) AS free', [b]);
    await rowsOf(holder, 'SELECT RELEASE_LOCK(?)', [a]);
    return row?.free === 0;
  }

  async function setToken(name: string, token: bigint): Promise<void> {
    const admin = await open();
    await rowsOf(admin, `UPDATE ${FENCING_TABLE} SET token = ? WHERE name = ?`, [
      token.toString(),
      name,
    ]);
  }

  /** Runs `body` with the fencing table dropped, and recreates the table whatever happens. */
  async function withoutTable(body: () => Promise<void>): Promise<void> {
    const admin = await open();
    await rowsOf(admin, `DROP TABLE IF EXISTS ${FENCING_TABLE}`);
    try {
      await body();
    } finally {
      await rowsOf(admin, MYSQL_FENCING_SETUP);
    }
  }

  before(async () => {
    url = (await databaseUrls()).mysql;
    const probe = await open();
    flavor = await askFlavor((sql) => rowsOf(probe, sql));
  });

  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
  });

  it('the first token of a name is 1, then 2, 3', async () => {
    const session = await open();
    const name = uniqueName('sequence');
    expect([await fenced(session, name), await fenced(session, name)]).to.deep.equal([1n, 2n]);
    expect(await fenced(session, name)).to.equal(3n);
  });

  it('different names count independently', async () => {
    const session = await open();
    const [a, b] = [uniqueName('a'), uniqueName('b')];
    expect(await fenced(session, a)).to.equal(1n);
    expect(await fenced(session, a)).to.equal(2n);
    expect(await fenced(session, b)).to.equal(1n);
    expect(await fenced(session, a)).to.equal(3n);
  });

  // MariaDB 10.11 keys a named lock by its bytes (every pair below is two locks, whatever its
  // manual says about case); MySQL 8 lowercases names with utf8mb3_general_ci's case map.
  const PAIRS: readonly [string, string, { mariadb: boolean; mysql: boolean }][] = [
    ['Foo', 'foo', { mariadb: false, mysql: true }],
    ['İ', 'i', { mariadb: false, mysql: true }],
    ['a', 'a ', { mariadb: false, mysql: false }],
    ['é', 'e', { mariadb: false, mysql: false }],
    ['ß', 'ss', { mariadb: false, mysql: false }],
  ];
  for (const [x, y, same] of PAIRS) {
    it(`${JSON.stringify(x)} and ${JSON.stringify(y)} share a counter exactly when the server holds them as one lock`, async () => {
      const prefix = uniqueName('pair');
      const [a, b] = [prefix + x, prefix + y];
      const serverSame = await oneLock(a, b, ['mysql2', 'mysql2']);
      expect(serverSame, 'one lock on the server').to.equal(same[flavor]);
      const session = await open();
      expect(await fenced(session, a)).to.equal(1n);
      expect(await fenced(session, b)).to.equal(serverSame ? 2n : 1n);
    });
  }

  it('an emoji name is one lock and one counter from mysqljs (utf8mb3) and mysql2 (utf8mb4); another emoji is not (MariaDB)', async function () {
    if (flavor === 'mysql') this.skip(); // MySQL refuses names outside utf8mb3 (3057).
    const prefix = uniqueName('emoji');
    const [smile, grin] = [`${prefix}😀`, `${prefix}😁`];
    expect(await oneLock(smile, smile, ['mysqljs', 'mysql2'])).to.equal(true);
    expect(await oneLock(smile, grin, ['mysql2', 'mysql2'])).to.equal(false);
    const [js, m2] = [await open('mysqljs'), await open('mysql2')];
    expect(await fenced(js, smile)).to.equal(1n);
    expect(await fenced(m2, smile)).to.equal(2n);
    expect(await fenced(m2, grin)).to.equal(1n);
    expect(await fenced(js, smile)).to.equal(3n);
  });

  it('mysqljs and mysql2 take the same tokens of one name, on the insert and the update path', async () => {
    const [js, m2] = [await open('mysqljs'), await open('mysql2')];
    const name = uniqueName('drivers');
    const tokens: bigint[] = [];
    for (const session of [js, m2, js, js, m2, m2]) tokens.push(await fenced(session, name));
    expect(tokens).to.deep.equal([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  it('4 connections taking tokens of one name under GET_LOCK get 1..40 in grant order', async () => {
    const name = uniqueName('concurrent');
    const granted: bigint[] = [];
    const sessions = await Promise.all([1, 2, 3, 4].map((i) => open(i % 2 ? 'mysql2' : 'mysqljs')));
    await Promise.all(
      sessions.map(async (session) => {
        for (let i = 0; i < 10; i += 1) {
          await rowsOf(session, 'SELECT GET_LOCK(?, 10)', [name]);
          granted.push(await nextMysqlFencingToken(session, name, flavor));
          await rowsOf(session, 'SELECT RELEASE_LOCK(?)', [name]);
        }
      }),
    );
    expect(granted).to.deep.equal(Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
  });

  it('tokens beyond 2^53 stay exact with both drivers, up to 2^64 - 1; past it, a database error', async () => {
    const [m2, js] = [await open('mysql2'), await open('mysqljs')];
    const name = uniqueName('big');
    expect(await fenced(m2, name)).to.equal(1n);
    await setToken(name, TWO_53 + 5n);
    // mysql2 sends this insert id as a string; mysqljs fails to parse it and reads it back.
    expect(await fenced(m2, name)).to.equal(TWO_53 + 6n);
    expect(await fenced(js, name)).to.equal(TWO_53 + 7n);
    await setToken(name, 2n ** 64n - 2n);
    // mysql2 reads this insert id as signed: -1.
    expect(await fenced(m2, name)).to.equal(2n ** 64n - 1n);
    const err = await fenced(js, name).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(LockDatabaseError);
    expect((err as Error).message).to.match(/^Taking a fencing token failed: /);
    expect((err as Error).cause).to.have.property('errno', 1690);
  });

  it('creates the table on first use, as MYSQL_FENCING_SETUP says', async () => {
    await withoutTable(async () => {
      const session = await open();
      const name = uniqueName('first-use');
      expect(await fenced(session, name)).to.equal(1n);
      expect(await fenced(session, name)).to.equal(2n);
      const [row] = await rowsOf(session, `SHOW CREATE TABLE ${FENCING_TABLE}`);
      expect(String(row?.['Create Table'])).to.match(/`name` varbinary\(192\) NOT NULL/);
    });
  });

  it('without the CREATE privilege, a missing table is FencingUnavailableError naming the setup statement', async () => {
    const admin = await open();
    const user = `'${NO_DDL_USER}'@'%'`;
    await rowsOf(admin, `CREATE USER IF NOT EXISTS ${user} IDENTIFIED BY '${NO_DDL_PASSWORD}'`);
    try {
      const database = new URL(url).pathname.slice(1);
      await rowsOf(admin, `GRANT SELECT, INSERT, UPDATE ON \`${database}\`.* TO ${user}`);
      const limited = new URL(url);
      [limited.username, limited.password] = [NO_DDL_USER, NO_DDL_PASSWORD];
      const name = uniqueName('no-ddl');
      await withoutTable(async () => {
        const session = await open('mysql2', limited.href);
        const err = await fenced(session, name).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(FencingUnavailableError);
        expect(err).to.have.property('code', 'ERR_DLOCK_FENCING_UNAVAILABLE');
        expect((err as Error).cause).to.have.property('errno', 1142);
        const message = (err as Error).message;
        expect(message).to.include(MYSQL_FENCING_SETUP);
        expect(message).to.include('knex-dlock setup-fencing');
        expect(message).to.include('setUpFencing(target)');
        // Once the table is there, SELECT, INSERT and UPDATE are enough.
        await rowsOf(admin, MYSQL_FENCING_SETUP);
        expect(await fenced(session, name)).to.equal(1n);
      });
    } finally {
      await rowsOf(admin, `DROP USER IF EXISTS ${user}`);
    }
  });

  it('refuses a token inside a transaction or with autocommit off, where a rollback would take it back', async () => {
    const session = await open();
    const name = uniqueName('in-transaction');
    expect(await fenced(session, name)).to.equal(1n);
    await rowsOf(session, 'SELECT GET_LOCK(?, 0)', [name]);
    for (const [begin, end] of [
      ['START TRANSACTION', 'ROLLBACK'],
      ['SET autocommit = 0', 'ROLLBACK'],
    ] as const) {
      await rowsOf(session, begin);
      const refused = await nextMysqlFencingToken(session, name, flavor).catch(
        (err: unknown) => err,
      );
      expect(refused, begin).to.be.instanceOf(FencingUnavailableError);
      await rowsOf(session, end);
    }
    await rowsOf(session, 'SET autocommit = 1');
    // Both refused increments rolled back; no token was handed out, so none is reused.
    expect(await nextMysqlFencingToken(session, name, flavor)).to.equal(2n);
    await rowsOf(session, 'SELECT RELEASE_LOCK(?)', [name]);
  });
});
