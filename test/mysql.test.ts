import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { createLock, MysqlLock } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { expectNothingSent } from './support/counting.js';
import { captureWarnings, expectRejectCode, expectThrowCode } from './support/expect.js';
import { expectDeadlockRecovery } from './support/deadlock.js';
import { dialectSuite } from './support/dialect-suite.js';
import { mysqlLockWaiters, waitForMysqlLockWait } from './support/server-state.js';
import { uniqueKey } from './support/targets.js';

describe('MySQL / MariaDB named locks', () => {
  const suite = dialectSuite('mysql');
  /** Every connection the test opened, for the test to reach them all. */
  let connections: mysql.Connection[] = [];
  beforeEach(() => {
    connections = [];
  });

  async function connection(): Promise<mysql.Connection> {
    const conn = await mysql.createConnection({ uri: (await databaseUrls()).mysql });
    connections.push(conn);
    suite.closeAfterTest(() => conn.end());
    return conn;
  }

  it('holds the lock name sqlalchemy-dlock uses, visible to IS_USED_LOCK', async () => {
    const conn = await connection();
    const key = uniqueKey();
    const lock = createLock(conn, key);
    expect(lock.actualKey).to.equal(key);
    await lock.acquire();
    const [rows] = await conn.query<mysql.RowDataPacket[]>(
      'SELECT IS_USED_LOCK(?) = CONNECTION_ID() AS mine',
      [key],
    );
    expect(Number(rows[0]?.mine)).to.equal(1);
    await lock.release();
  });

  it('keys that differ after a NUL are different locks, though MariaDB cuts names at NUL', async () => {
    const base = uniqueKey();
    const keys = [base, `${base}\0b`, `${base}\0bz`];
    const locks = await Promise.all(keys.map(async (key) => createLock(await connection(), key)));
    for (const lock of locks) expect(await lock.acquire({ block: false })).to.equal(true);
    for (const lock of locks) await lock.release();
  });

  it('a name of 64 code points but over 192 UTF-8 bytes locks (hashed), where it would fail', async () => {
    const conn = await connection();
    const key = `x${'😀'.repeat(56)}`;
    const lock = createLock(conn, key);
    expect(await lock.acquire({ block: false })).to.equal(true);
    expect(await createLock(await connection(), key).acquire({ block: false })).to.equal(false);
    await lock.release();
    // The name as it is fails on the server: this is why it is hashed.
    const [rows] = await conn
      .query<mysql.RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS got', [key])
      .then(
        (result) => result,
        (err: { errno?: number }) => [[{ got: `error ${err.errno}` }]] as const,
      );
    expect(rows[0]?.got).to.equal('error 1059');
  });

  it('a raw GET_LOCK on the same name is excluded by the library lock', async () => {
    const key = uniqueKey();
    const lock = createLock(await connection(), key);
    await lock.acquire();
    const [rows] = await (
      await connection()
    ).query<mysql.RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS ok', [key]);
    expect(Number(rows[0]?.ok)).to.equal(0);
    await lock.release();
  });

  it('shared or xact locks throw ERR_DLOCK_INVALID_OPTION before any query', async () => {
    for (const options of [{ shared: true }, { xact: true }]) {
      await expectNothingSent(suite.knex, async () => {
        expectThrowCode(() => createLock(suite.knex, 'k', options), 'ERR_DLOCK_INVALID_OPTION');
      });
    }
  });

  it('a name over 64 characters is hashed and locks like any other', async () => {
    const key = uniqueKey('long-' + 'é'.repeat(80));
    const first = createLock(await connection(), key);
    const second = createLock(await connection(), key);
    expect(Array.from(first.actualKey as string)).to.have.length(64);
    expect(await first.acquire()).to.equal(true);
    expect(await second.acquire({ block: false })).to.equal(false);
    expect(await suite.inspector.holders(MysqlLock.convert(key))).to.equal(1);
    await first.release();
  });

  it('names with quotes, backslashes, NUL or 10 000 characters travel as parameters and lock exactly', async () => {
    for (const hostile of [
      `'; SELECT RELEASE_ALL_LOCKS(); --`,
      'back\\slash',
      'nul\u0000byte',
      '"dq"',
      'x'.repeat(10_000),
    ]) {
      const key = uniqueKey(hostile);
      const lock = createLock(await connection(), key);
      expect(await lock.acquire({ timeout: 1000 })).to.equal(true);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
      await lock.release();
    }
  });

  it('a wait killed by another session (KILL QUERY) rejects with ERR_DLOCK_DATABASE', async () => {
    const key = uniqueKey();
    const holder = createLock(await connection(), key);
    await holder.acquire();
    const c = await connection();
    const waiting = createLock(c, key).acquire();
    const other = await connection();
    await waitForMysqlLockWait(other, { threadId: c.threadId, name: key });
    await other.query('KILL QUERY ?', [c.threadId]);
    await expectRejectCode(waiting, 'ERR_DLOCK_DATABASE');
    // The killed wait is gone from the server, so the release below can grant it nothing.
    expect(await mysqlLockWaiters(other, { threadId: c.threadId })).to.deep.equal([]);
    await holder.release();
    expect(await suite.inspector.holders(key)).to.equal(0);
  });

  it('a deadlock between two waits is reported as ERR_DLOCK_DEADLOCK and both recover', async () => {
    await expectDeadlockRecovery(await connection(), await connection());
    await Promise.all(connections.map((c) => c.query('SELECT RELEASE_ALL_LOCKS()')));
  });

  it('a session lock still held when its knex transaction ends is released, with a warning', async () => {
    const key = uniqueKey();
    const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () => {
      await suite.knex.transaction(async (trx) => {
        await createLock(trx, key).acquire();
      });
    });
    expect(warnings).to.have.length(1);
    expect(await suite.inspector.holders(key)).to.equal(0);
  });
});
