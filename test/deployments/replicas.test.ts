/**
 * Servers whose locks exclude only their own sessions, on private servers started here: a
 * PostgreSQL hot standby, a MariaDB started read-only (a stand-in replica) and a one-node
 * MariaDB Galera cluster. Acquire refuses on each before locking anything; `serverLocal: true`
 * allows it; fencing is never given on a standby.
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { createLock, ServerLocalLockError, setUpFencing } from '../../src/index.js';
import { startCliWith } from '../cli/cli-env.js';
import { expectRejectCode } from '../support/expect.js';
import {
  startMariadb,
  skipWithoutPrivateServers,
  startPostgresPair,
  type PostgresPair,
  type PrivateMariadb,
} from '../support/private-servers.js';
import { uniqueKey } from '../support/targets.js';

/** Advisory locks held on the PostgreSQL server at `url`, of any session. */
async function pgAdvisoryLocks(url: string): Promise<number> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted",
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

/** Named locks held on the MySQL / MariaDB server at `url`, of any session. */
async function mysqlNamedLocks(url: string, name: string): Promise<boolean> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await conn.query('SELECT IS_USED_LOCK(?) AS owner', [name]);
    return (rows as { owner: unknown }[])[0]!.owner !== null;
  } finally {
    await conn.end();
  }
}

describe('locks on a PostgreSQL hot standby', function () {
  this.timeout(60_000);
  let pair: PostgresPair;
  let knex: Knex;
  let client: pg.Client;

  before(async function () {
    this.timeout(120_000);
    skipWithoutPrivateServers(this, 'postgres');
    pair = await startPostgresPair();
    const primaryKnex = knexFactory({ client: 'pg', connection: pair.primary.url });
    await setUpFencing(primaryKnex);
    await primaryKnex.destroy();
    await pair.caughtUp();
    knex = knexFactory({ client: 'pg', connection: pair.standby.url, pool: { min: 0, max: 2 } });
    client = new pg.Client(pair.standby.url);
    await client.connect();
  });

  after(async function () {
    this.timeout(120_000);
    await client?.end().catch(() => undefined);
    await knex?.destroy();
    await pair?.stop();
  });

  for (const via of ['a knex instance', 'a pg.Client'] as const) {
    it(`acquire() on ${via} of the standby rejects with ERR_DLOCK_SERVER_LOCAL and locks nothing`, async () => {
      const lock = createLock(via === 'a pg.Client' ? client : knex, uniqueKey());
      const err = await expectRejectCode(lock.acquire({ block: false }), 'ERR_DLOCK_SERVER_LOCAL');
      expect(err).to.be.instanceOf(ServerLocalLockError);
      expect((err as ServerLocalLockError).reason).to.equal('standby');
      expect(err.message)
        .to.match(/standby/)
        .and.match(/configureLockConnections/);
      expect(lock.locked).to.equal(false);
      expect(await pgAdvisoryLocks(pair.standby.url)).to.equal(0);
      // A wait is refused the same way, and so is every later acquire on the connection.
      await expectRejectCode(lock.acquire({ timeout: 1_000 }), 'ERR_DLOCK_SERVER_LOCAL');
      await lock.close();
    });

    it(`serverLocal: true takes a lock on ${via} of the standby, held there only`, async () => {
      const key = uniqueKey();
      const target = via === 'a pg.Client' ? client : knex;
      const lock = createLock(target, key, { serverLocal: true });
      // A second session of the standby is excluded: the lock is real, for that server.
      const other = createLock(knex, key, { serverLocal: true, connection: 'dedicated' });
      expect(await lock.acquire({ block: false })).to.equal(true);
      expect(await pgAdvisoryLocks(pair.standby.url)).to.equal(1);
      expect(await pgAdvisoryLocks(pair.primary.url)).to.equal(0);
      expect(await other.acquire({ block: false })).to.equal(false);
      await lock.release();
      expect(await pgAdvisoryLocks(pair.standby.url)).to.equal(0);
      await other.close();
    });
  }

  it('fencing on the standby rejects with ERR_DLOCK_FENCING_UNAVAILABLE, even with serverLocal', async () => {
    const lock = createLock(knex, uniqueKey(), { serverLocal: true, fencing: true });
    const err = await expectRejectCode(lock.acquire(), 'ERR_DLOCK_FENCING_UNAVAILABLE');
    expect(err.message).to.match(/primary/);
    expect(await pgAdvisoryLocks(pair.standby.url)).to.equal(0);
    const refused = createLock(knex, uniqueKey(), { fencing: true });
    await expectRejectCode(refused.acquire(), 'ERR_DLOCK_SERVER_LOCAL');
  });

  it('knex-dlock run on the standby refuses (exit 69, command not run); --server-local runs it', async () => {
    const refused = startCliWith([
      'run',
      '--url',
      pair.standby.url,
      '-k',
      uniqueKey(),
      '--',
      'echo',
      'ran',
    ]);
    expect((await refused.exited).code).to.equal(69);
    expect(refused.stdout()).to.equal('');
    expect(refused.stderr()).to.match(/standby/);
    const allowed = startCliWith([
      'run',
      '--url',
      pair.standby.url,
      '-k',
      uniqueKey(),
      '--server-local',
      '--',
      'echo',
      'ran',
    ]);
    expect((await allowed.exited).code, allowed.stderr()).to.equal(0);
    expect(allowed.stdout().trim()).to.equal('ran');
  });

  it('acquire() on the primary works as before', async () => {
    const primary = knexFactory({ client: 'pg', connection: pair.primary.url });
    try {
      const lock = createLock(primary, uniqueKey(), { fencing: true });
      expect(await lock.acquire()).to.equal(true);
      expect(lock.fencingToken).to.be.a('bigint');
      await lock.release();
    } finally {
      await primary.destroy();
    }
  });
});

for (const kind of ['read-only', 'galera'] as const) {
  const title = kind === 'galera' ? 'a one-node MariaDB Galera cluster' : 'a read-only MariaDB';
  describe(`locks on ${title}`, function () {
    this.timeout(60_000);
    let server: PrivateMariadb;
    let knex: Knex;
    let conn: mysql.Connection;

    before(async function () {
      this.timeout(120_000);
      skipWithoutPrivateServers(this, kind === 'galera' ? 'galera' : 'mariadb');
      server = await startMariadb(kind === 'galera' ? { galera: true } : { readOnly: true });
      knex = knexFactory({ client: 'mysql2', connection: server.url, pool: { min: 0, max: 2 } });
      conn = await mysql.createConnection({ uri: server.url });
    });

    after(async function () {
      this.timeout(120_000);
      await conn?.end().catch(() => undefined);
      await knex?.destroy();
      await server?.stop();
    });

    for (const via of ['a knex instance', 'a mysql2/promise connection'] as const) {
      it(`acquire() on ${via} rejects with ERR_DLOCK_SERVER_LOCAL (${kind}) and locks nothing`, async () => {
        const lock = createLock(via === 'a knex instance' ? knex : conn, uniqueKey());
        const err = await expectRejectCode(lock.acquire(), 'ERR_DLOCK_SERVER_LOCAL');
        expect((err as ServerLocalLockError).reason).to.equal(kind);
        expect(err.message).to.match(kind === 'galera' ? /Galera/ : /read_only/);
        expect(lock.locked).to.equal(false);
        expect(await mysqlNamedLocks(server.url, String(lock.actualKey))).to.equal(false);
      });

      it(`serverLocal: true takes the lock on ${via}`, async () => {
        const lock = createLock(via === 'a knex instance' ? knex : conn, uniqueKey(), {
          serverLocal: true,
        });
        expect(await lock.acquire({ timeout: 1_000 })).to.equal(true);
        expect(await mysqlNamedLocks(server.url, String(lock.actualKey))).to.equal(true);
        await lock.release();
        expect(await mysqlNamedLocks(server.url, String(lock.actualKey))).to.equal(false);
      });
    }
  });
}
