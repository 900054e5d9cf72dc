/**
 * Locks through PgBouncer (the Debian package, 1.18: no prepared statements in transaction
 * mode), started here in front of the test PostgreSQL with one database in session mode and one
 * in transaction mode. In transaction mode the library's own lock connections pin one server
 * session while they hold (connections/pinned.ts): locks exclude, and none is left on any
 * server session after a release, the holder's death or PgBouncer's restart. A connection of
 * the caller's own is refused for session-level locks.
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { createLock, withLock, type BaseLock } from '../../src/index.js';
import { startCliWith } from '../cli/cli-env.js';
import { databaseUrls } from '../support/databases.js';
import { expectRejectCode } from '../support/expect.js';
import {
  skipWithoutPrivateServers,
  startPgbouncer,
  type PrivatePgbouncer,
} from '../support/private-servers.js';
import { killStarted, startNodeScript } from '../support/processes.js';
import { succeed } from '../support/process-scope.js';
import { uniqueKey } from '../support/targets.js';

const WORKER = fileURLToPath(new URL('../fixtures/lock-worker.ts', import.meta.url));
const MOCHA = fileURLToPath(new URL('../../node_modules/mocha/bin/mocha.js', import.meta.url));
const HOOKS = fileURLToPath(new URL('../support/hooks.ts', import.meta.url));

/** Advisory locks of `lock`'s key on the server, held or awaited, by any session. */
async function serverLocks(direct: pg.Client, lock: BaseLock): Promise<{ granted: boolean }[]> {
  const key = BigInt.asUintN(64, lock.actualKey as bigint);
  const { rows } = await direct.query<{ granted: boolean }>(
    "SELECT granted FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = $1 AND " +
      'objid::int8 = $2 AND objsubid = 1',
    [String(key >> 32n), String(key & 0xffffffffn)],
  );
  return rows;
}

/** Counts the lock tries the library sends through `knex`; returns the count so far. */
function countTries(knex: Knex): () => number {
  let tries = 0;
  knex.on('query', (query: { sql: string }) => {
    if (query.sql.includes('pg_try_advisory_lock')) tries += 1;
  });
  return () => tries;
}

/** Server sessions of the test database that sit idle inside a transaction. */
async function idleInTransaction(direct: pg.Client): Promise<number> {
  const { rows } = await direct.query<{ n: string }>(
    'SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND ' +
      "state = 'idle in transaction' AND pid <> pg_backend_pid()",
  );
  return Number(rows[0]!.n);
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('locks through PgBouncer', function () {
  this.timeout(60_000);
  let bouncer: PrivatePgbouncer;
  let direct: pg.Client;
  let directKnex: Knex;
  const knexes: Knex[] = [];
  const locks: BaseLock[] = [];
  const connect = (url: string) => {
    const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 4 } });
    knexes.push(knex);
    return knex;
  };
  const lockOn = (target: object, key: string, options = {}) => {
    const lock = createLock(target, key, options);
    locks.push(lock);
    return lock;
  };

  before(async function () {
    this.timeout(120_000);
    skipWithoutPrivateServers(this, 'pgbouncer');
    const { pg: url } = await databaseUrls();
    bouncer = await startPgbouncer({ upstreamUrl: url });
    direct = new pg.Client(url);
    await direct.connect();
    directKnex = knexFactory({ client: 'pg', connection: url });
  });

  afterEach(async () => {
    killStarted();
    await Promise.all(locks.splice(0).map((lock) => lock.close().catch(() => undefined)));
    await Promise.all(knexes.splice(0).map((knex) => knex.destroy().catch(() => undefined)));
  });

  after(async function () {
    this.timeout(120_000);
    await directKnex?.destroy();
    await direct?.end().catch(() => undefined);
    await bouncer?.stop();
  });

  describe('in transaction mode', () => {
    for (const via of ['knex', 'raw'] as const) {
      it(`4 processes x 50 grants of one key (${via}) never overlap and leave no lock behind`, async () => {
        const table = `dlock_bouncer_${process.pid}_${Date.now()}`;
        await directKnex.schema.createTable(table, (t) => t.integer('value').notNullable());
        try {
          await directKnex(table).insert({ value: 0 });
          const key = uniqueKey('bounced');
          const env = { DLOCK_PG_URL: bouncer.transactionUrl };
          const workers = Array.from({ length: 4 }, () =>
            startNodeScript(WORKER, ['counter', 'postgres', via, key, table, '50'], env),
          );
          await Promise.all(workers.map(succeed));
          const row = await directKnex(table).first('value');
          expect(Number(row.value)).to.equal(200);
          expect(await serverLocks(direct, createLock(directKnex, key))).to.deep.equal([]);
        } finally {
          await directKnex.schema.dropTableIfExists(table);
        }
      });
    }

    it('release() frees the lock on the server session that held it', async () => {
      const knex = connect(bouncer.transactionUrl);
      const key = uniqueKey();
      const lock = lockOn(knex, key);
      for (let i = 0; i < 5; i += 1) {
        expect(await lock.acquire({ block: false })).to.equal(true);
        expect(await serverLocks(direct, lock)).to.deep.equal([{ granted: true }]);
        // Another client of the pooler is excluded while it is held.
        const other = lockOn(connect(bouncer.transactionUrl), key, { connection: 'dedicated' });
        expect(await other.acquire({ block: false })).to.equal(false);
        await lock.release();
        expect(await serverLocks(direct, lock)).to.deep.equal([]);
        expect(await other.acquire({ block: false })).to.equal(true);
        await other.release();
      }
    });

    it("a holder's death frees its lock: PgBouncer closes the server session it pinned", async () => {
      const key = uniqueKey('dies');
      const holder = startNodeScript(WORKER, ['hold', 'postgres', 'knex', key], {
        DLOCK_PG_URL: bouncer.transactionUrl,
      });
      await holder.waitForStdout(/held/);
      const probe = lockOn(directKnex, key);
      expect(await serverLocks(direct, probe)).to.deep.equal([{ granted: true }]);
      holder.child.kill('SIGKILL');
      await holder.exited;
      await until(async () => (await serverLocks(direct, probe)).length === 0, 'the lock is freed');
      expect(await probe.acquire({ timeout: 5_000 })).to.equal(true);
    });

    it("PgBouncer's restart loses the held lock (ERR_DLOCK_LOST) and frees it on the server", async () => {
      const knex = connect(bouncer.transactionUrl);
      const lock = lockOn(knex, uniqueKey());
      expect(await lock.acquire()).to.equal(true);
      const signal = lock.signal!;
      await bouncer.restart();
      if (!signal.aborted)
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
      expect((signal.reason as { code?: string }).code).to.equal('ERR_DLOCK_LOST');
      await until(async () => (await serverLocks(direct, lock)).length === 0, 'the lock is freed');
      // Later locks work through the restarted pooler.
      const again = lockOn(connect(bouncer.transactionUrl), uniqueKey());
      expect(await again.acquire()).to.equal(true);
      await again.release();
    });

    it('a wait tries again and again, keeping no server session, and ends when aborted', async () => {
      const key = uniqueKey();
      const holder = lockOn(directKnex, key);
      expect(await holder.acquire()).to.equal(true);
      const knex = connect(bouncer.transactionUrl);
      const tries = countTries(knex);
      const waiter = lockOn(knex, key);
      const controller = new AbortController();
      const waiting = waiter.acquire({ signal: controller.signal });
      await until(async () => tries() >= 3, 'the waiter has tried three times');
      // Between its tries the waiter is in no transaction: its server session is free.
      expect(await serverLocks(direct, holder)).to.deep.equal([{ granted: true }]);
      expect(
        await idleInTransaction(direct),
        'server sessions kept idle in a transaction',
      ).to.equal(0);
      controller.abort(new Error('stop waiting'));
      await waiting.then(
        () => expect.fail('the aborted acquire resolved'),
        (err: Error) => expect(err.message).to.equal('stop waiting'),
      );
      expect(await serverLocks(direct, holder)).to.deep.equal([{ granted: true }]);
      await holder.release();
      expect(await serverLocks(direct, holder)).to.deep.equal([]);
    });

    it('a timed wait is granted when the holder releases, and withLock works', async () => {
      const key = uniqueKey();
      const holder = lockOn(directKnex, key);
      expect(await holder.acquire()).to.equal(true);
      const knex = connect(bouncer.transactionUrl);
      const tries = countTries(knex);
      const ran = withLock(knex, key, async () => 'ran', { timeout: 10_000 });
      await until(async () => tries() >= 2, 'the waiter has tried twice');
      await holder.release();
      expect(await ran).to.equal('ran');
      expect(await serverLocks(direct, holder)).to.deep.equal([]);
    });

    it("pooler: 'transaction' pins where no pooler can be told (pg's native client)", async () => {
      const knex = knexFactory({ client: 'pgnative', connection: bouncer.transactionUrl });
      knexes.push(knex);
      const key = uniqueKey();
      const options = { pooler: 'transaction' } as const;
      const lock = lockOn(knex, key, options);
      const other = lockOn(knex, key, { ...options, connection: 'dedicated' });
      for (let i = 0; i < 5; i += 1) {
        expect(await lock.acquire()).to.equal(true);
        expect(await serverLocks(direct, lock)).to.deep.equal([{ granted: true }]);
        // The hold keeps its server session in a transaction, so the pooler cannot hand it on.
        expect(await idleInTransaction(direct), 'pinned server sessions').to.equal(1);
        const waiting = other.acquire({ timeout: 10_000 });
        await lock.release();
        expect(await waiting).to.equal(true);
        await other.release();
        expect(await serverLocks(direct, lock)).to.deep.equal([]);
      }
    });

    it("a session-level lock on a pg.Client of the caller's own rejects with ERR_DLOCK_BEHIND_POOLER", async () => {
      const client = new pg.Client(bouncer.transactionUrl);
      await client.connect();
      try {
        const lock = lockOn(client, uniqueKey());
        const err = await expectRejectCode(lock.acquire(), 'ERR_DLOCK_BEHIND_POOLER');
        expect(err.message).to.match(/knex instance or pg\.Pool/);
        expect(await serverLocks(direct, lock)).to.deep.equal([]);
        // A transaction-level lock ends with its transaction: safe behind any pooler.
        await client.query('BEGIN');
        const xact = lockOn(client, uniqueKey(), { xact: true });
        expect(await xact.acquire()).to.equal(true);
        expect(await serverLocks(direct, xact)).to.deep.equal([{ granted: true }]);
        await client.query('COMMIT');
        expect(await serverLocks(direct, xact)).to.deep.equal([]);
      } finally {
        await client.end();
      }
    });

    it('knex-dlock run refuses on its own connection (exit 69); --pooler session runs through session mode', async () => {
      const refused = startCliWith([
        'run',
        '--url',
        bouncer.transactionUrl,
        '-k',
        uniqueKey(),
        '--',
        'echo',
        'ran',
      ]);
      expect((await refused.exited).code).to.equal(69);
      expect(refused.stdout()).to.equal('');
      expect(refused.stderr()).to.match(/pooler/);
      const run = startCliWith([
        'run',
        '--url',
        bouncer.sessionUrl,
        '-k',
        uniqueKey(),
        '--pooler',
        'session',
        '--',
        'echo',
        'ran',
      ]);
      expect((await run.exited).code, run.stderr()).to.equal(0);
      expect(run.stdout().trim()).to.equal('ran');
    });

    it('a session-level lock in a knex transaction rejects with ERR_DLOCK_BEHIND_POOLER; xact: true works', async () => {
      const knex = connect(bouncer.transactionUrl);
      await knex.transaction(async (trx) => {
        const lock = lockOn(trx, uniqueKey());
        await expectRejectCode(lock.acquire({ block: false }), 'ERR_DLOCK_BEHIND_POOLER');
        const xact = lockOn(trx, uniqueKey(), { xact: true });
        expect(await xact.acquire({ timeout: 1_000 })).to.equal(true);
        expect(await serverLocks(direct, xact)).to.deep.equal([{ granted: true }]);
      });
    });
  });

  describe('in session mode', () => {
    it("the lock contract and fencing suites pass on every PostgreSQL target kind with pooler: 'session'", async function () {
      this.timeout(300_000);
      const suites = ['test/lock.test.ts', 'test/api/fencing.test.ts'].map((file) =>
        fileURLToPath(new URL(`../../${file}`, import.meta.url)),
      );
      const run = startNodeScript(
        MOCHA,
        [
          '--no-config',
          '--require',
          HOOKS,
          '--timeout',
          '20000',
          '--exit',
          '--grep',
          'on knex \\(pg|on pg\\.',
          ...suites,
        ],
        { DLOCK_PG_URL: bouncer.sessionUrl, DLOCK_TEST_POOLER: 'session' },
      );
      const exit = await run.exited;
      const passing = /(\d+) passing/.exec(run.stdout())?.[1];
      expect(exit.code, run.stdout().slice(-3_000) + run.stderr()).to.equal(0);
      expect(Number(passing), 'tests run through session pooling').to.be.above(100);
    });

    it('4 processes x 50 grants of one key never overlap and leave no lock behind', async () => {
      const table = `dlock_bouncer_${process.pid}_${Date.now()}`;
      await directKnex.schema.createTable(table, (t) => t.integer('value').notNullable());
      try {
        await directKnex(table).insert({ value: 0 });
        const key = uniqueKey('session');
        const env = { DLOCK_PG_URL: bouncer.sessionUrl };
        const workers = Array.from({ length: 4 }, () =>
          startNodeScript(WORKER, ['counter', 'postgres', 'knex', key, table, '50'], env),
        );
        await Promise.all(workers.map(succeed));
        expect(Number((await directKnex(table).first('value')).value)).to.equal(200);
        expect(await serverLocks(direct, createLock(directKnex, key))).to.deep.equal([]);
      } finally {
        await directKnex.schema.dropTableIfExists(table);
      }
    });
  });
});
