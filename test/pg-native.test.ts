/**
 * pg's native client (pg-native over libpq) beyond the contract suites, which run on it too
 * (test/support/targets.ts): its socket, cancel and backend pid live inside libpq, and libpq
 * reports no command tags. Covers the cancel of a wait, a broken client, prepared statements
 * dropped unseen, and locks inside transactions.
 */
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import knexFactory from 'knex';
import pg from 'pg';
import { createLock, LockDatabaseError } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import {
  acquireEachWay,
  captureWarnings,
  expectRejectCode,
  expectThrowCode,
} from './support/expect.js';
import { actualKeyOf, openProbe, until, type ServerProbe } from './support/lock-connections.js';
import { startNodeScript } from './support/processes.js';
import { waitForPgStatement } from './support/server-state.js';
import { openInspector, pgNative, uniqueKey, type LockInspector } from './support/targets.js';

const BROKEN_CLIENT = fileURLToPath(new URL('./fixtures/native-broken-client.ts', import.meta.url));

/** Drops every prepared statement of the session inside a DO block: the driver sees only "DO". */
const DEALLOCATE_UNSEEN = `DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$`;

describe('pg.native (libpq)', () => {
  let inspector: LockInspector;
  let probe: ServerProbe;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    inspector = await openInspector('postgres');
    probe = await openProbe('postgres');
  });
  after(async () => {
    await inspector.close();
    await probe.close();
  });
  afterEach(async () => {
    const leftovers = await inspector.leftovers();
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
    expect(leftovers, 'locks left held after the test').to.deep.equal([]);
  });

  async function nativeClient(): Promise<pg.Client> {
    const client = new (pgNative().Client)({ connectionString: (await databaseUrls()).pg });
    await client.connect();
    closers.push(() => client.end());
    return client;
  }

  /** The library's prepared statements in the session of `client`. */
  async function preparedStatements(client: pg.Client): Promise<string[]> {
    const { rows } = await client.query<{ name: string }>(
      `SELECT name FROM pg_prepared_statements WHERE name LIKE 'knex_dlock%' ORDER BY name`,
    );
    return rows.map((row) => row.name);
  }

  /** One try, one wait and one timed acquire of a fresh key, each released. */
  async function cycle(client: pg.Client): Promise<void> {
    await acquireEachWay(createLock(client, uniqueKey('native')));
  }

  it('a client of a pg.native.Pool is accepted, named as a native PoolClient, and locks', async () => {
    const pool = new (pgNative().Pool)({ connectionString: (await databaseUrls()).pg, max: 1 });
    closers.push(() => pool.end());
    const client = await pool.connect();
    closers.push(async () => client.release());
    const error = expectThrowCode(
      () => createLock(client, uniqueKey(), { connection: 'pool' }),
      'ERR_DLOCK_INVALID_OPTION',
    );
    expect(error.message).to.include('a pg native PoolClient');
    const lock = createLock(client, uniqueKey('native'));
    expect(await lock.acquire({ block: false })).to.equal(true);
    expect(await inspector.holders(lock.actualKey)).to.equal(1);
    await lock.release();
    expect(await inspector.holders(lock.actualKey)).to.equal(0);
  });

  it('aborting a waiting acquire() cancels the wait on the server through libpq, at once', async () => {
    const key = uniqueKey('native-cancel');
    const holder = createLock(await nativeClient(), key);
    expect(await holder.acquire({ block: false })).to.equal(true);
    const client = await nativeClient();
    const controller = new AbortController();
    const waiting = createLock(client, key).acquire({ signal: controller.signal });
    const actualKey = actualKeyOf('postgres', key);
    await until(
      'the wait in pg_locks',
      () => probe.waitingFor([actualKey]),
      (n) => n === 1,
    );
    const reason = new Error('stop waiting');
    controller.abort(reason);
    let caught: unknown;
    await waiting.catch((err: unknown) => (caught = err));
    expect(caught).to.equal(reason);
    // The holder still holds: the wait is gone because it was cancelled, not granted.
    expect(await probe.waitingFor([actualKey])).to.equal(0);
    expect(await inspector.holders(holder.actualKey)).to.equal(1);
    const { rows } = await client.query('SELECT 1 AS usable');
    expect(rows).to.deep.equal([{ usable: 1 }]);
    await holder.release();
  });

  it('a broken native client that is still open does not crash the next native connect', async function () {
    this.timeout(20_000);
    const child = startNodeScript(BROKEN_CLIENT, [uniqueKey('native-broken')], {
      DLOCK_PG_URL: (await databaseUrls()).pg,
    });
    const exit = await child.exited;
    expect(exit, child.stderr()).to.deep.equal({ code: 0, signal: null });
    expect(child.stdout()).to.equal('lost ERR_DLOCK_LOST\nconnected\n');
  });

  it('prepares each statement once per connection, under the library’s own names', async () => {
    const client = await nativeClient();
    await cycle(client);
    await cycle(client);
    expect(await preparedStatements(client)).to.deep.equal([
      'knex_dlock_0_pg_advisory_unlock',
      'knex_dlock_0_pg_try_advisory_lock',
      'knex_dlock_0_wait',
    ]);
  });

  for (const command of [DEALLOCATE_UNSEEN, 'DISCARD ALL', 'DEALLOCATE ALL']) {
    it(`after ${command} (libpq reports no command tags), statements are prepared again invisibly`, async () => {
      const client = await nativeClient();
      await cycle(client);
      await client.query(command);
      expect(await preparedStatements(client)).to.deep.equal([]);
      await cycle(client);
      expect(await preparedStatements(client)).to.have.length(3);
    });
  }

  it('inside a transaction, a dropped statement fails with a typed error; the next transaction works', async () => {
    const client = await nativeClient();
    await client.query('BEGIN');
    expect(
      await createLock(client, uniqueKey(), { xact: true }).acquire({ block: false }),
    ).to.equal(true);
    await client.query('COMMIT');
    await client.query('BEGIN');
    await client.query(DEALLOCATE_UNSEEN);
    const failing = createLock(client, uniqueKey(), { xact: true });
    const error = await expectRejectCode(failing.acquire({ block: false }), 'ERR_DLOCK_DATABASE');
    expect(error).to.be.instanceOf(LockDatabaseError);
    expect(error.message).to.match(/retry the transaction/);
    await client.query('ROLLBACK');
    await client.query('BEGIN');
    expect(
      await createLock(client, uniqueKey(), { xact: true }).acquire({ block: false }),
    ).to.equal(true);
    await client.query('COMMIT');
  });
});

/** A transaction on a native connection, as a caller would have it open. */
interface OpenTransaction {
  readonly target: object;
  /** Runs one statement in the transaction and resolves its rows. */
  run(sql: string): Promise<Record<string, unknown>[]>;
  commit(): Promise<void>;
  close(): Promise<void>;
}

const NATIVE_TRANSACTIONS: readonly {
  name: string;
  begin(): Promise<OpenTransaction>;
}[] = [
  {
    name: 'a pg.native.Client inside BEGIN',
    async begin() {
      const client = new (pgNative().Client)({ connectionString: (await databaseUrls()).pg });
      await client.connect();
      await client.query('BEGIN');
      return {
        target: client,
        run: async (sql) => (await client.query(sql)).rows,
        commit: async () => void (await client.query('COMMIT')),
        close: () => client.end(),
      };
    },
  },
  {
    name: 'a knex (pgnative) transaction',
    async begin() {
      const knex = knexFactory({
        client: 'pgnative',
        connection: (await databaseUrls()).pg,
        pool: { min: 0, max: 2 },
      });
      const trx = await knex.transaction();
      return {
        target: trx,
        run: async (sql) => ((await trx.raw(sql)) as pg.QueryResult).rows,
        commit: async () => void (await trx.commit()),
        async close() {
          if (!trx.isCompleted()) await trx.rollback().catch(() => undefined);
          await knex.destroy();
        },
      };
    },
  },
];

for (const kind of NATIVE_TRANSACTIONS) {
  describe(`locks in ${kind.name}`, () => {
    let inspector: LockInspector;
    /** Watches the transaction's session from outside. */
    let observer: pg.Client;
    let trx: OpenTransaction;
    const holders: pg.Client[] = [];

    before(async () => {
      inspector = await openInspector('postgres');
      observer = new pg.Client({ connectionString: (await databaseUrls()).pg });
      await observer.connect();
    });
    after(async () => {
      await inspector.close();
      await observer.end();
    });
    beforeEach(async () => {
      trx = await kind.begin();
    });
    afterEach(async () => {
      await trx.close();
      for (const client of holders.splice(0)) await client.end();
      expect(await inspector.leftovers(), 'locks left held after the test').to.deep.equal([]);
    });

    /** A native client of its own, to hold a key against the transaction. */
    async function nativeHolder(): Promise<pg.Client> {
      const client = new (pgNative().Client)({ connectionString: (await databaseUrls()).pg });
      await client.connect();
      holders.push(client);
      return client;
    }

    it('an xact lock is held until the transaction commits', async () => {
      const lock = createLock(trx.target, uniqueKey('native-xact'), { xact: true });
      expect(await lock.acquire({ timeout: 1_000 })).to.equal(true);
      expect(await inspector.holders(lock.actualKey)).to.equal(1);
      await trx.commit();
      expect(lock.locked).to.equal(false);
      expect(await inspector.holders(lock.actualKey)).to.equal(0);
    });

    it('an xact lock stays held while another statement runs in the transaction', async () => {
      const lock = createLock(trx.target, uniqueKey('native-xact'), { xact: true });
      expect(await lock.acquire({ block: false })).to.equal(true);
      const [session] = await trx.run('SELECT pg_backend_pid() AS pid');
      // libpq knows no transaction status while a statement runs.
      const running = trx.run('SELECT pg_sleep(0.5)');
      await waitForPgStatement(observer, { pid: Number(session!.pid), text: 'pg_sleep(0.5)' });
      expect(lock.locked).to.equal(true);
      await running;
      expect(lock.locked).to.equal(true);
      await trx.commit();
      expect(lock.locked).to.equal(false);
    });

    it('a timeout inside the transaction neither aborts it nor changes its settings', async () => {
      const key = uniqueKey('native-xact');
      const holder = createLock(await nativeHolder(), key);
      expect(await holder.acquire({ block: false })).to.equal(true);
      await trx.run(`SET LOCAL lock_timeout = '3s'`);
      for (const xact of [false, true]) {
        expect(await createLock(trx.target, key, { xact }).acquire({ timeout: 100 })).to.equal(
          false,
        );
      }
      const rows = await trx.run(`SELECT 1 AS alive, current_setting('lock_timeout') AS lt`);
      expect(rows).to.deep.equal([{ alive: 1, lt: '3s' }]);
      await trx.commit();
      await holder.release();
    });

    // knex tells the library that its transaction ends; a client's own COMMIT goes unseen, and
    // a session lock outlives it, as the database keeps it.
    const knexTransaction = kind.name.startsWith('a knex');
    it(
      knexTransaction
        ? 'a session lock still held at commit is released, with a warning'
        : 'a session lock outlives COMMIT, as in the database',
      async () => {
        const lock = createLock(trx.target, uniqueKey('native-session'));
        const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () => {
          expect(await lock.acquire({ block: false })).to.equal(true);
          await trx.commit();
        });
        expect(warnings).to.have.length(knexTransaction ? 1 : 0);
        expect(lock.locked).to.equal(!knexTransaction);
        expect(await inspector.holders(lock.actualKey)).to.equal(knexTransaction ? 0 : 1);
        if (!knexTransaction) await lock.release();
      },
    );
  });
}
