import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { inspectLock, withMigrationLock } from '../../src/index.js';
import { expectRejectCode } from '../support/expect.js';
import { killStarted, startNodeScript, type Started } from '../support/processes.js';
import { holdLock, urlFor } from '../support/sessions.js';
import { uniqueKey, type DialectName } from '../support/targets.js';

const CHILD = fileURLToPath(new URL('../fixtures/migrate-child.ts', import.meta.url));
const MIGRATIONS = ['001_create_items', '002_add_label', '003_create_tags'];
const CLIENTS: Record<DialectName, string> = { postgres: 'pg', mysql: 'mysql2' };

let tableCounter = 0;
/** Table names of this test only: other runs may share the servers. */
function uniquePrefix(): string {
  tableCounter += 1;
  return `dlock_mig_${process.pid}_${Date.now() % 1_000_000}_${tableCounter}`;
}

interface Replica extends Started {
  /** Lets the replica start migrating. */
  go(): void;
}

for (const dialect of ['postgres', 'mysql'] as const satisfies readonly DialectName[]) {
  describe(`migrateLatest on ${dialect}`, function () {
    let knex: Knex;
    let url: string;
    let prefix: string;
    let key: string;

    function startReplica(env: Record<string, string> = {}): Replica {
      const replica = startNodeScript(CHILD, [], {
        DLOCK_CLIENT: CLIENTS[dialect],
        DLOCK_URL: url,
        DLOCK_PREFIX: prefix,
        DLOCK_KEY: key,
        ...env,
      });
      return { ...replica, go: () => void replica.child.stdin?.write('go\n') };
    }

    async function migrationRows(): Promise<string[]> {
      return (await knex(`${prefix}_migrations`).orderBy('id').pluck('name')) as string[];
    }

    async function runRows(): Promise<string[]> {
      return (await knex(`${prefix}_runs`).orderBy('name').pluck('name')) as string[];
    }

    before(async () => {
      url = await urlFor(dialect);
      knex = knexFactory({ client: CLIENTS[dialect], connection: url, pool: { min: 0, max: 2 } });
    });
    after(() => knex.destroy());

    beforeEach(async () => {
      prefix = uniquePrefix();
      key = uniqueKey('migrate');
      await knex.schema.createTable(`${prefix}_runs`, (t) => {
        t.string('name', 100);
        t.integer('pid');
      });
    });

    afterEach(async () => {
      killStarted();
      for (const suffix of ['runs', 'items', 'tags', 'migrations', 'migrations_lock']) {
        await knex.schema.dropTableIfExists(`${prefix}_${suffix}`);
      }
    });

    for (const disableTransactions of [false, true]) {
      const mode = disableTransactions ? 'with disableTransactions' : 'in a transaction';
      it(`4 processes migrating at once (${mode}): all exit 0, one runs each migration once`, async function () {
        // The replica that migrates first waits until the other three wait for the lock.
        const env = {
          DLOCK_OVERLAP: '3',
          ...(disableTransactions ? { DLOCK_DISABLE_TRANSACTIONS: '1' } : {}),
        };
        const replicas = Array.from({ length: 4 }, () => startReplica(env));
        await Promise.all(replicas.map((r) => r.waitForStdout(/ready/)));
        for (const replica of replicas) replica.go();
        const exits = await Promise.all(replicas.map((r) => r.exited));
        expect(
          exits.map((e) => e.code),
          replicas.map((r) => r.stderr()).join(''),
        ).to.deep.equal([0, 0, 0, 0]);
        const ran = replicas.map(
          (r) => (JSON.parse(r.stdout().split('\n')[1] ?? '') as { ran: string[] }).ran,
        );
        expect(ran.filter((list) => list.length > 0)).to.deep.equal([MIGRATIONS]);
        expect(await migrationRows()).to.deep.equal(MIGRATIONS);
        expect(await runRows()).to.deep.equal(MIGRATIONS);
      });
    }

    it("after a process is killed mid-migration, the next one frees knex's lock and finishes", async function () {
      const env = { DLOCK_DISABLE_TRANSACTIONS: '1' };
      const doomed = startReplica({ ...env, DLOCK_HANG_IN: '002_add_label' });
      await doomed.waitForStdout(/ready/);
      doomed.go();
      await doomed.waitForStdout(/hanging in 002_add_label/);
      doomed.child.kill('SIGKILL');
      await doomed.exited;
      // The state that knex alone cannot get out of without `knex migrate:unlock`.
      expect(await knex(`${prefix}_migrations_lock`).pluck('is_locked')).to.deep.equal([1]);
      expect(await migrationRows()).to.deep.equal(['001_create_items']);

      const next = startReplica(env);
      await next.waitForStdout(/ready/);
      next.go();
      expect((await next.exited).code, next.stderr()).to.equal(0);
      expect(next.stdout()).to.contain('{"ran":["002_add_label","003_create_tags"]}');
      expect(await migrationRows()).to.deep.equal(MIGRATIONS);
      expect(await runRows()).to.deep.equal(MIGRATIONS);
    });

    it('withMigrationLock holds the lock on a connection outside the knex pool', async () => {
      const single = knexFactory({
        client: CLIENTS[dialect],
        connection: url,
        pool: { min: 0, max: 1 },
      });
      try {
        const inside = await withMigrationLock(
          single,
          async () => {
            // With the lock on a pooled connection, this would wait for the only one forever.
            await single.raw('SELECT 1');
            return inspectLock(knex, key);
          },
          { key, timeout: 2_000 },
        );
        expect(inside.held).to.equal(true);
        expect((await inspectLock(knex, key)).held).to.equal(false);
      } finally {
        await single.destroy();
      }
    });

    it('withMigrationLock rejects with ERR_DLOCK_TIMEOUT while another process migrates', async () => {
      const holder = await holdLock(dialect, key);
      try {
        let ran = false;
        const started = Date.now();
        await expectRejectCode(
          withMigrationLock(knex, () => (ran = true), { key, timeout: 300 }),
          'ERR_DLOCK_TIMEOUT',
        );
        expect(Date.now() - started).to.be.within(250, 2_000);
        expect(ran).to.equal(false);
      } finally {
        await holder.close();
      }
    });
  });
}
