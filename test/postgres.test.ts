import { expect } from 'chai';
import pg from 'pg';
import { createLock, PostgresLock } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { captureWarnings, expectRejectCode, expectThrowCode, sleep } from './support/expect.js';
import { expectDeadlockRecovery } from './support/deadlock.js';
import { dialectSuite } from './support/dialect-suite.js';
import { pgLockWaiters, waitForPgLockWait } from './support/server-state.js';
import { uniqueKey } from './support/targets.js';

/** The backend pid of a pg client. */
const pidOf = (c: pg.Client): number => (c as unknown as { processID: number }).processID;

describe('PostgreSQL advisory locks', () => {
  const suite = dialectSuite('postgres');

  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: (await databaseUrls()).pg });
    await c.connect();
    suite.closeAfterTest(() => c.end());
    return c;
  }

  it('locks the int64 key that sqlalchemy-dlock derives from the same string', async () => {
    const c = await client();
    const lock = createLock(c, 'hello');
    expect(lock.actualKey).to.equal(9022087748821825191n);
    expect(lock.getActualKey()).to.equal(9022087748821825191n);
    expect(lock.key).to.equal('hello');
    await lock.acquire();
    const { rows } = await c.query(
      `SELECT classid::int8 AS hi, objid::int8 AS lo FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid()`,
    );
    const expected = BigInt.asUintN(64, 9022087748821825191n);
    expect(rows).to.deep.equal([
      { hi: String(expected >> 32n), lo: String(expected & 0xffffffffn) },
    ]);
    await lock.release();
  });

  it('a raw pg_try_advisory_lock on the same int64 is excluded by the library lock', async () => {
    const key = uniqueKey();
    const lock = createLock(await client(), key);
    await lock.acquire();
    const other = await client();
    const { rows } = await other.query('SELECT pg_try_advisory_lock($1) AS ok', [
      PostgresLock.convert(key),
    ]);
    expect(rows[0].ok).to.equal(false);
    await lock.release();
  });

  it('hostile string keys (quotes, NUL, 10 000 characters) hash to int64 and lock exactly', async () => {
    const c = await client();
    for (const hostile of [
      `'); SELECT pg_advisory_unlock_all(); --`,
      'nul\u0000byte',
      'y'.repeat(10_000),
    ]) {
      const key = uniqueKey(hostile);
      const lock = createLock(c, key);
      expect(lock.actualKey).to.equal(PostgresLock.convert(key));
      expect(await lock.acquire({ timeout: 1000 })).to.equal(true);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
      await lock.release();
    }
  });

  it('shared locks overlap; an exclusive lock waits for all of them', async () => {
    const key = uniqueKey();
    const reader1 = createLock(await client(), key, { shared: true });
    const reader2 = createLock(await client(), key, { shared: true });
    const writer = createLock(await client(), key);
    expect([reader1.shared, writer.shared, writer.xact]).to.deep.equal([true, false, false]);
    expect(await reader1.acquire()).to.equal(true);
    expect(await reader2.acquire({ block: false })).to.equal(true);
    expect(await writer.acquire({ block: false })).to.equal(false);
    await reader1.release();
    expect(await writer.acquire({ timeout: 100 })).to.equal(false);
    await reader2.release();
    expect(await writer.acquire({ block: false })).to.equal(true);
    const reader3 = createLock(await client(), key, { shared: true });
    expect(await reader3.acquire({ timeout: 50 })).to.equal(false);
    await writer.release();
  });

  it('a timed wait outside a transaction leaves lock_timeout and statement_timeout as they were', async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    await holder.acquire();
    const c = await client();
    await c.query(`SET lock_timeout = '7s'; SET statement_timeout = '9s'`);
    expect(await createLock(c, key).acquire({ timeout: 100 })).to.equal(false);
    const { rows } = await c.query(
      `SELECT current_setting('lock_timeout') AS lt, current_setting('statement_timeout') AS st`,
    );
    expect(rows[0]).to.deep.equal({ lt: '7s', st: '9s' });
    await holder.release();
    const waiter = createLock(c, key);
    expect(await waiter.acquire({ timeout: 1000 })).to.equal(true);
    const after = await c.query(`SELECT current_setting('lock_timeout') AS lt`);
    expect(after.rows[0].lt).to.equal('7s');
    await waiter.release();
  });

  it('a session lock_timeout does not cut short a wait-forever acquire', async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    await holder.acquire();
    const c = await client();
    await c.query(`SET lock_timeout = '50ms'`);
    const waiter = createLock(c, key);
    const waiting = waiter.acquire();
    const observer = await client();
    await waitForPgLockWait(observer, { pid: pidOf(c), key: waiter.actualKey });
    // Well past the session's lock_timeout, which must not have ended the wait.
    await sleep(300);
    expect(await pgLockWaiters(observer, { pid: pidOf(c) })).to.have.length(1);
    await holder.release();
    expect(await waiting).to.equal(true);
    await waiter.release();
  });

  it("a timeout inside the caller's transaction does not abort it and restores its settings", async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    await holder.acquire();
    const c = await client();
    await c.query(`BEGIN; SET LOCAL lock_timeout = '3s'`);
    for (const xact of [false, true]) {
      expect(await createLock(c, key, { xact }).acquire({ timeout: 100 })).to.equal(false);
    }
    const { rows } = await c.query(
      `SELECT 1 AS alive, current_setting('lock_timeout') AS lt, current_setting('statement_timeout') AS st`,
    );
    expect(rows[0]).to.deep.equal({ alive: 1, lt: '3s', st: '0' });
    await c.query('COMMIT');
    await holder.release();
  });

  it('a timed acquire inside a transaction restores the settings after it succeeds', async () => {
    const c = await client();
    await c.query(`BEGIN; SET LOCAL lock_timeout = '3s'`);
    const lock = createLock(c, uniqueKey(), { xact: true });
    expect(await lock.acquire({ timeout: 1000 })).to.equal(true);
    const { rows } = await c.query(`SELECT current_setting('lock_timeout') AS lt`);
    expect(rows[0].lt).to.equal('3s');
    await c.query('COMMIT');
    expect(lock.locked).to.equal(false);
  });

  it('an xact lock on a pg client in BEGIN is held until COMMIT; release() only warns', async () => {
    const key = uniqueKey();
    const c = await client();
    await c.query('BEGIN');
    const lock = createLock(c, key, { xact: true });
    expect(await lock.acquire()).to.equal(true);
    const warnings = await captureWarnings('DLOCK_XACT_RELEASE', () => lock.release());
    expect(warnings).to.have.length(1);
    expect(lock.locked).to.equal(true);
    expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
    await c.query('COMMIT');
    expect(lock.locked).to.equal(false);
    expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
    await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
  });

  it('an xact lock on a knex transaction ends with the transaction', async () => {
    const key = uniqueKey();
    let lock: PostgresLock | undefined;
    await suite.knex.transaction(async (trx) => {
      lock = createLock(trx, key, { xact: true, shared: true }) as PostgresLock;
      expect(await lock.acquire({ timeout: 1000 })).to.equal(true);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
    });
    expect(lock!.locked).to.equal(false);
    expect(await suite.inspector.holders(lock!.actualKey)).to.equal(0);
  });

  it('xact: true on a client outside a transaction rejects with ERR_DLOCK_INVALID_OPTION', async () => {
    const lock = createLock(await client(), uniqueKey(), { xact: true });
    await expectRejectCode(lock.acquire(), 'ERR_DLOCK_INVALID_OPTION');
    expect(lock.locked).to.equal(false);
  });

  it('xact: true on a pool or knex instance throws ERR_DLOCK_INVALID_OPTION at once', () => {
    const pool = new pg.Pool();
    expectThrowCode(() => createLock(pool, 'k', { xact: true }), 'ERR_DLOCK_INVALID_OPTION');
    expectThrowCode(() => createLock(suite.knex, 'k', { xact: true }), 'ERR_DLOCK_INVALID_OPTION');
    return pool.end();
  });

  it('a session lock still held when its knex transaction ends is released, with a warning', async () => {
    const key = uniqueKey();
    let lock: PostgresLock | undefined;
    const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () => {
      await suite.knex.transaction(async (trx) => {
        lock = createLock(trx, key) as PostgresLock;
        await lock.acquire();
      });
    });
    expect(warnings).to.have.length(1);
    expect(lock!.locked).to.equal(false);
    expect(await suite.inspector.holders(lock!.actualKey)).to.equal(0);
  });

  it('acquire() on a knex transaction that has ended rejects with ERR_DLOCK_INVALID_OPTION', async () => {
    const trx = await suite.knex.transaction();
    const lock = createLock(trx, uniqueKey());
    await trx.commit();
    await expectRejectCode(lock.acquire(), 'ERR_DLOCK_INVALID_OPTION');
    expect(lock.locked).to.equal(false);
  });

  it('a session lock released inside the knex transaction gives no warning', async () => {
    const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () => {
      await suite.knex.transaction(async (trx) => {
        const lock = createLock(trx, uniqueKey());
        await lock.acquire();
        await lock.release();
      });
    });
    expect(warnings).to.deep.equal([]);
  });

  it('waits keep working after DISCARD ALL drops the session wait function', async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    const c = await client();
    const waiter = createLock(c, key);
    expect(await waiter.acquire({ timeout: 1000 })).to.equal(true);
    await waiter.release();
    await c.query('DISCARD ALL');
    await holder.acquire();
    expect(await waiter.acquire({ timeout: 100 })).to.equal(false);
    await holder.release();
    expect(await waiter.acquire({ timeout: 1000 })).to.equal(true);
    await waiter.release();
  });

  it('a read-only session (as on a standby) waits in plain SQL: timeouts and grants still right', async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    await holder.acquire();
    const c = await client();
    await c.query('SET default_transaction_read_only = on');
    const waiter = createLock(c, key);
    const started = performance.now();
    expect(await waiter.acquire({ timeout: 200 })).to.equal(false);
    expect(performance.now() - started).to.be.within(190, 500);
    const waiting = waiter.acquire();
    await waitForPgLockWait(await client(), { pid: pidOf(c), key: waiter.actualKey });
    await holder.release();
    expect(await waiting).to.equal(true);
    await waiter.release();
    const { rows } = await c.query(`SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace n
      ON n.oid = p.pronamespace WHERE n.oid = pg_my_temp_schema() AND p.proname = 'knex_dlock_wait'`);
    expect(rows[0].n).to.equal(0);
  });

  it('a driver error while acquiring rejects with ERR_DLOCK_DATABASE, keeping it as cause', async () => {
    const c = await client();
    await c.query('BEGIN');
    await c.query('SELECT 1/0').catch(() => undefined);
    const err = await expectRejectCode(
      createLock(c, uniqueKey()).acquire({ block: false }),
      'ERR_DLOCK_DATABASE',
    );
    expect(err.cause).to.have.property('code', '25P02');
    await c.query('ROLLBACK');
  });

  it('a wait cancelled by another session rejects with ERR_DLOCK_DATABASE and holds nothing', async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    await holder.acquire();
    const c = await client();
    const waiting = createLock(c, key).acquire();
    const other = await client();
    await waitForPgLockWait(other, { pid: pidOf(c), key: holder.actualKey });
    const { rows } = await other.query('SELECT pg_cancel_backend($1) AS sent', [pidOf(c)]);
    expect(rows[0].sent).to.equal(true);
    await expectRejectCode(waiting, 'ERR_DLOCK_DATABASE');
    // The cancelled wait is gone from the server, so the release below can grant it nothing.
    expect(await pgLockWaiters(other, { pid: pidOf(c) })).to.deep.equal([]);
    await holder.release();
    expect(await suite.inspector.holders(holder.actualKey)).to.equal(0);
  });

  it('a deadlock between two waits is reported as ERR_DLOCK_DEADLOCK and both recover', async function () {
    this.timeout(10_000);
    const locks = await expectDeadlockRecovery(await client(), await client());
    for (const lock of locks) await lock.close();
  });
});
