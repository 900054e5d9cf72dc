/**
 * PostgreSQL prepared statements: the library's statements survive a session that drops them
 * (DISCARD ALL, DEALLOCATE ALL, seen or unseen by the driver), and a statement_timeout does not
 * cut a wait short.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createLock, LockDatabaseError } from '../src/index.js';
import { countTraffic } from './support/counting.js';
import { databaseUrls } from './support/databases.js';
import { dialectSuite } from './support/dialect-suite.js';
import { acquireEachWay, expectRejectCode, sleep } from './support/expect.js';
import { actualKeyOf, openProbe, until, type ServerProbe } from './support/lock-connections.js';
import { uniqueKey } from './support/targets.js';

/** Drops every prepared statement of the session inside a DO block: the driver sees only "DO". */
const DEALLOCATE_UNSEEN = `DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$`;

/** The library's prepared statements in the session of `client`. */
async function preparedStatements(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT name FROM pg_prepared_statements WHERE name LIKE 'knex_dlock%' ORDER BY name`,
  );
  return rows.map((row) => row.name);
}

describe('PostgreSQL prepared statements', function () {
  const suite = dialectSuite('postgres');
  let probe: ServerProbe;

  before(async () => {
    probe = await openProbe('postgres');
  });
  after(() => probe.close());

  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: (await databaseUrls()).pg });
    await c.connect();
    suite.closeAfterTest(() => c.end());
    return c;
  }

  /** One try, one wait and one timed acquire of `key`, each released. */
  async function cycle(c: pg.Client, key: string): Promise<void> {
    await acquireEachWay(createLock(c, key));
  }

  it('prepares each statement once per connection, under the library’s own names', async () => {
    const c = await client();
    await cycle(c, uniqueKey());
    await cycle(c, uniqueKey());
    expect(await preparedStatements(c)).to.deep.equal([
      'knex_dlock_0_pg_advisory_unlock',
      'knex_dlock_0_pg_try_advisory_lock',
      'knex_dlock_0_wait',
    ]);
  });

  for (const command of ['DISCARD ALL', 'DEALLOCATE ALL']) {
    it(`after ${command} sent through the same client, the next operations prepare afresh without a failed round trip`, async () => {
      const c = await client();
      await cycle(c, uniqueKey());
      await c.query(command);
      const counter = countTraffic(c);
      try {
        const { counts } = await counter.measure(() => cycle(c, uniqueKey()));
        // One round trip per operation: nothing failed and was sent again.
        expect(counts.roundTrips).to.equal(6);
      } finally {
        counter.detach();
      }
      expect(await preparedStatements(c)).to.have.length(3);
    });
  }

  it('statements dropped where the driver cannot see it are prepared again, invisibly, outside a transaction', async () => {
    const c = await client();
    await cycle(c, uniqueKey());
    await c.query(DEALLOCATE_UNSEEN);
    expect(await preparedStatements(c)).to.deep.equal([]);
    await cycle(c, uniqueKey());
    expect(await preparedStatements(c)).to.have.length(3);
  });

  it('inside a transaction, a dropped statement fails the lock with a typed error, and the next transaction works', async () => {
    const c = await client();
    const lock = createLock(c, uniqueKey(), { xact: true });
    await c.query('BEGIN');
    expect(await lock.acquire({ block: false })).to.equal(true);
    await c.query('COMMIT');
    await c.query('BEGIN');
    await c.query(DEALLOCATE_UNSEEN);
    const failing = createLock(c, uniqueKey(), { xact: true });
    const error = await expectRejectCode(failing.acquire({ block: false }), 'ERR_DLOCK_DATABASE');
    expect(error).to.be.instanceOf(LockDatabaseError);
    expect(error.message).to.match(/retry the transaction/);
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    expect(await createLock(c, uniqueKey(), { xact: true }).acquire({ block: false })).to.equal(
      true,
    );
    await c.query('COMMIT');
  });

  it('preparedStatements: false leaves no prepared statement on the session', async () => {
    const c = await client();
    const key = uniqueKey();
    const lock = createLock(c, key, { preparedStatements: false });
    expect(await lock.acquire({ block: false })).to.equal(true);
    await lock.release();
    expect(await lock.acquire({ timeout: 1_000 })).to.equal(true);
    await lock.release();
    expect(await preparedStatements(c)).to.deep.equal([]);
  });

  it('a wait outlives the session’s statement_timeout, which is left as it was', async () => {
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    expect(await holder.acquire({ block: false })).to.equal(true);
    const c = await client();
    await cycle(c, uniqueKey());
    await c.query(`SET statement_timeout = '300ms'`);
    const waiter = createLock(c, key);
    const started = performance.now();
    const waiting = waiter.acquire();
    await until(
      'the wait in pg_locks',
      () => probe.waitingFor([actualKeyOf('postgres', key)]),
      (n) => n === 1,
    );
    // Past the statement_timeout, the wait must still be there.
    await sleep(Math.max(0, 600 - (performance.now() - started)));
    expect(await probe.waitingFor([actualKeyOf('postgres', key)])).to.equal(1);
    await holder.release();
    expect(await waiting).to.equal(true);
    await waiter.release();
    const { rows } = await c.query(`SELECT current_setting('statement_timeout') AS value`);
    expect(rows[0]).to.deep.equal({ value: '300ms' });
  });

  it('with a statement_timeout in force, only the session’s first contended wait costs a second round trip', async () => {
    const c = await client();
    await c.query(`SET statement_timeout = '5s'`);
    await cycle(c, uniqueKey());
    const key = uniqueKey();
    const holder = createLock(await client(), key);
    expect(await holder.acquire({ block: false })).to.equal(true);
    const counter = countTraffic(c);
    try {
      const timedOut = () => createLock(c, key).acquire({ timeout: 100 });
      const first = await counter.measure(timedOut);
      expect(first.result).to.equal(false);
      expect(first.counts.roundTrips).to.equal(2);
      const later = await counter.measure(timedOut);
      expect(later.result).to.equal(false);
      expect(later.counts.roundTrips).to.equal(1);
    } finally {
      counter.detach();
      await holder.release();
    }
  });
});
