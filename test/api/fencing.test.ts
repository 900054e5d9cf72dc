/**
 * Fencing tokens (`fencing: true`): every grant of a key gets a token larger than the token of
 * every earlier grant of that key, on every target kind, across processes, crashes and killed
 * connections; a grant for which no token can be taken is refused and not kept. The tests that
 * take the token store away put it back afterwards (see withoutFencingStore).
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import mysqlPromise from 'mysql2/promise';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  createLock,
  FencingUnavailableError,
  lockConnectionStats,
  setUpFencing,
  withLock,
  type BaseLock,
  type LockOptions,
} from '../../src/index.js';
import { abortedWithin, expectRejectCode, expectThrowCode } from '../support/expect.js';
import {
  beginTransaction,
  expectIncreasing,
  FENCING_STORE,
  heldToken,
  sessionQuery,
  transactional,
  withoutFencingStore,
} from '../support/fencing.js';
import { openKnex, openProbe, type ServerProbe } from '../support/lock-connections.js';
import { crossProcessScope, succeed, workerEnv } from '../support/process-scope.js';
import { startNodeScript } from '../support/processes.js';
import { kindSuite, poolerOption } from '../support/kind-suite.js';
import { until, watchLockWaits, type LockWaitWatcher } from '../support/server-state.js';
import { openSession, urlFor, type Session } from '../support/sessions.js';
import {
  openInspector,
  TARGET_KINDS,
  uniqueKey,
  type LockInspector,
  type OpenTarget,
} from '../support/targets.js';

const WORKER = fileURLToPath(new URL('../fixtures/fencing-worker.ts', import.meta.url));
const FENCED: LockOptions = { fencing: true };
const UNAVAILABLE = 'ERR_DLOCK_FENCING_UNAVAILABLE';
/** Each way to acquire: a try, a wait without end, a wait with a timeout. */
const WAYS = [{ block: false }, {}, { timeout: 2_000 }] as const;
const DIALECTS = [
  { dialect: 'postgres', client: 'pg' },
  { dialect: 'mysql', client: 'mysql2' },
] as const;
/** A role (PostgreSQL) or user (MySQL) that may lock but not create the token store. */
const NO_STORE_USER = 'dlock_nofence_t';
const NO_STORE_PASSWORD = 'dlock-nofence-pw';

const way = (options: object) => JSON.stringify(options);

for (const kind of TARGET_KINDS) {
  describe(`fencing tokens on ${kind.name}`, function () {
    const suite = kindSuite(kind, FENCED);
    const { open, lockOn } = suite;
    let probe: ServerProbe;

    before(async () => {
      probe = await openProbe(kind.dialect);
    });

    after(() => probe.close());

    it('successive grants of a key get increasing tokens: try, wait and timed, on one lock object and on others', async () => {
      const target = await open();
      const key = uniqueKey();
      const tokens: bigint[] = [];
      const sameTarget = [lockOn(target, key), lockOn(target, key)];
      for (const lock of [...sameTarget, lockOn(await open(), key)]) {
        for (const options of WAYS) {
          expect(await lock.acquire(options), way(options)).to.equal(true);
          tokens.push(heldToken(lock));
          await lock.release();
        }
      }
      expect(tokens).to.have.length(9);
      expectIncreasing(tokens, 'tokens of successive grants');
    });

    it('fencingToken is undefined before acquire, after release and close, when not granted, once lost, and without fencing', async () => {
      const key = uniqueKey();
      const lock = lockOn(await open(), key);
      expect(lock.fencingToken, 'before acquire').to.equal(undefined);
      await lock.acquire();
      heldToken(lock);
      await lock.release();
      expect(lock.fencingToken, 'after release').to.equal(undefined);
      await lock.acquire();
      heldToken(lock);
      await lock.close();
      expect(lock.fencingToken, 'after close').to.equal(undefined);

      const plain = lockOn(await open(), uniqueKey(), {});
      expect(await plain.acquire()).to.equal(true);
      expect(plain.fencingToken, 'held without fencing').to.equal(undefined);
      await plain.release();

      await lock.acquire();
      const other = lockOn(await open(), key);
      expect(await other.acquire({ block: false })).to.equal(false);
      expect(other.fencingToken, 'not granted').to.equal(undefined);

      const [id] = await suite.inspector.holderIds(lock.actualKey);
      await suite.inspector.kill(id!);
      await abortedWithin(lock.signal!, 2_000);
      expect(lock.fencingToken, 'once lost').to.equal(undefined);
    });

    it('a waiter granted when the holder releases gets a larger token, waiting without end or timed', async () => {
      const key = uniqueKey();
      const holder = lockOn(await open(), key);
      const waiter = lockOn(await open(), key);
      for (const options of [{}, { timeout: 10_000 }]) {
        await holder.acquire();
        const held = heldToken(holder);
        const waiting = waiter.acquire(options);
        await suite.waits.waitFor(waiter.actualKey);
        expect(waiter.fencingToken, 'while waiting').to.equal(undefined);
        await holder.release();
        expect(await waiting, way(options)).to.equal(true);
        expectIncreasing([held, heldToken(waiter)], `holder, then waiter ${way(options)}`);
        await waiter.release();
      }
    });

    it('withLock() with fencing: true hands the callback its lock with the token', async () => {
      const target = await open();
      const key = uniqueKey();
      const tokens: bigint[] = [];
      for (let i = 0; i < 3; i += 1) {
        await withLock(target, key, (lock) => void tokens.push(heldToken(lock)), {
          ...poolerOption(kind),
          ...FENCED,
        });
      }
      expectIncreasing(tokens, 'tokens of withLock calls');
      await withLock(
        target,
        key,
        (lock) => {
          expect(lock.locked).to.equal(true);
          expect(lock.fencingToken, 'withLock without fencing').to.equal(undefined);
        },
        poolerOption(kind),
      );
    });

    it('setUpFencing() creates the token store, and running it again changes nothing', async () => {
      const target = await open();
      await withoutFencingStore(kind.dialect, async (store) => {
        expect(await store.exists(), 'taken away').to.equal(false);
        await setUpFencing(target);
        expect(await store.exists(), 'after setUpFencing').to.equal(true);
        const lock = lockOn(target, uniqueKey());
        await lock.acquire();
        const first = heldToken(lock);
        await lock.release();
        await setUpFencing(target);
        await lock.acquire();
        expectIncreasing([first, heldToken(lock)], 'tokens around a second setUpFencing');
        await lock.release();
      });
    });

    if (kind.pooled) {
      it('on the shared lock connections, locks on many keys and queued grants of one key keep the rule', async () => {
        const target = await open();
        const keys = Array.from({ length: 10 }, () => uniqueKey('many'));
        const tokensOf = new Map<string, bigint[]>(keys.map((key) => [key, []]));
        for (let round = 0; round < 3; round += 1) {
          const held = keys.map((key) => lockOn(target, key));
          const granted = await Promise.all(held.map((lock, i) => lock.acquire(WAYS[i % 3])));
          expect(granted).to.deep.equal(keys.map(() => true));
          const stats = lockConnectionStats(target);
          expect(stats.holds).to.equal(10);
          expect(stats.connections, '10 locks held on fewer connections').to.be.below(10);
          for (const lock of held) tokensOf.get(lock.key as string)!.push(heldToken(lock));
          await Promise.all(held.map((lock) => lock.release()));
        }
        for (const [key, tokens] of tokensOf) expectIncreasing(tokens, `grants of ${key}`);

        // Five lock objects want one key at once: they queue, and each records its token while
        // it holds the key, so the record is in grant order.
        const key = uniqueKey('queued');
        const inGrantOrder: bigint[] = [];
        await Promise.all(
          Array.from({ length: 5 }, async (_, i) => {
            const lock = lockOn(target, key);
            expect(await lock.acquire(i % 2 ? { timeout: 10_000 } : {})).to.equal(true);
            inGrantOrder.push(heldToken(lock));
            await lock.release();
          }),
        );
        expect(inGrantOrder).to.have.length(5);
        expectIncreasing(inGrantOrder, 'queued grants of one key');
      });
    } else {
      it('two lock objects stacked on one connection both hold; the second has the larger token', async () => {
        const target = await open();
        const key = uniqueKey();
        const first = lockOn(target, key);
        const second = lockOn(target, key);
        expect(await first.acquire()).to.equal(true);
        expect(await second.acquire({ block: false })).to.equal(true);
        const [a, b] = [heldToken(first), heldToken(second)];
        expectIncreasing([a, b], 'stacked grants');
        expect(await suite.inspector.holders(first.actualKey)).to.equal(1);
        await first.release();
        expect(first.fencingToken).to.equal(undefined);
        expect(second.fencingToken, 'the other hold keeps its token').to.equal(b);
        await second.release();
      });
    }

    if (kind.dialect === 'postgres') {
      it('shared holders get distinct tokens, each larger than earlier grants; the next exclusive grant is larger still', async () => {
        const key = uniqueKey();
        const exclusive = lockOn(await open(), key);
        await exclusive.acquire();
        const tokens = [heldToken(exclusive)];
        await exclusive.release();
        const readers = [
          lockOn(await open(), key, { fencing: true, shared: true }),
          lockOn(await open(), key, { fencing: true, shared: true }),
        ];
        expect(await readers[0]!.acquire({ block: false })).to.equal(true);
        expect(await readers[1]!.acquire({ timeout: 1_000 })).to.equal(true);
        expect(await suite.inspector.holders(exclusive.actualKey), 'both shared at once').to.equal(
          2,
        );
        tokens.push(heldToken(readers[0]!), heldToken(readers[1]!));
        await Promise.all(readers.map((reader) => reader.release()));
        await exclusive.acquire();
        tokens.push(heldToken(exclusive));
        expectIncreasing(tokens, 'exclusive, shared, shared, exclusive');
      });

      it('outside a transaction, the first fenced acquire creates the missing sequence: try, wait and timed', async () => {
        const target = await open();
        const key = uniqueKey();
        for (const options of WAYS) {
          await withoutFencingStore('postgres', async (store) => {
            const lock = lockOn(target, key);
            expect(await lock.acquire(options), way(options)).to.equal(true);
            heldToken(lock);
            expect(await store.exists(), `created by ${way(options)}`).to.equal(true);
            await lock.release();
          });
        }
      });
    }

    if (kind.dialect === 'postgres' && transactional(kind)) {
      it('xact locks in a transaction get tokens, each larger than the last, and a rollback takes none back', async () => {
        const target = await open();
        const key = uniqueKey();
        const before = lockOn(target, key);
        await before.acquire();
        const tokens = [heldToken(before)];
        await before.release();
        const trx = await beginTransaction('postgres', target);
        const inside: BaseLock[] = [];
        try {
          for (const options of WAYS) {
            const lock = lockOn(trx.target, key, { fencing: true, xact: true });
            expect(await lock.acquire(options), way(options)).to.equal(true);
            tokens.push(heldToken(lock));
            inside.push(lock);
          }
        } finally {
          await trx.rollback();
        }
        for (const lock of inside) expect(lock.fencingToken, 'after ROLLBACK').to.equal(undefined);
        expect(await suite.inspector.holders(before.actualKey)).to.equal(0);
        await before.acquire();
        tokens.push(heldToken(before));
        expectIncreasing(tokens, 'before, three xact grants, after the rollback');
      });

      it('with the sequence missing, a session-level fenced acquire in a transaction rejects, keeps no lock and leaves the transaction usable', async () => {
        const target = await open();
        const key = uniqueKey();
        await withoutFencingStore('postgres', async (store) => {
          const trx = await beginTransaction('postgres', target);
          try {
            for (const options of WAYS) {
              const lock = lockOn(trx.target, key);
              const err = await expectRejectCode(lock.acquire(options), UNAVAILABLE);
              expect(err, way(options)).to.be.instanceOf(FencingUnavailableError);
              expect(lock.locked).to.equal(false);
              expect(lock.fencingToken).to.equal(undefined);
              expect(await probe.advisoryLocksOf([trx.sessionId]), way(options)).to.equal(0);
              expect(await trx.query('SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
            }
          } finally {
            await trx.rollback();
          }
          expect(await store.exists(), 'not created inside the transaction').to.equal(false);
        });
      });

      it('with the sequence missing, an xact fenced grant rejects and stays with its transaction until it ends', async () => {
        const target = await open();
        await withoutFencingStore('postgres', async () => {
          const trx = await beginTransaction('postgres', target);
          const lock = lockOn(trx.target, uniqueKey(), { fencing: true, xact: true });
          try {
            const err = await expectRejectCode(lock.acquire(), UNAVAILABLE);
            expect(err.message).to.match(/roll it back/);
            expect(lock.locked).to.equal(false);
            expect(await suite.inspector.holderIds(lock.actualKey)).to.deep.equal([trx.sessionId]);
          } finally {
            await trx.rollback();
          }
          expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
        });
      });

      it('in a read-only transaction a fenced acquire rejects and keeps no lock', async () => {
        const target = await open();
        const key = uniqueKey();
        const trx = await beginTransaction('postgres', target, { readOnly: true });
        try {
          const [setting] = await trx.query('SHOW transaction_read_only');
          expect(setting?.transaction_read_only, 'the transaction is read-only').to.equal('on');
          for (const options of WAYS) {
            const lock = lockOn(trx.target, key);
            await expectRejectCode(lock.acquire(options), UNAVAILABLE);
            expect(lock.locked).to.equal(false);
            expect(await probe.advisoryLocksOf([trx.sessionId]), way(options)).to.equal(0);
            expect(await trx.query('SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
          }
        } finally {
          await trx.rollback();
        }
      });
    }

    if (kind.dialect === 'mysql' && kind.pooled && transactional(kind)) {
      it('on a knex transaction, fencing: true fails in createLock with ERR_DLOCK_INVALID_OPTION', async () => {
        const trx = await beginTransaction('mysql', await open());
        try {
          expectThrowCode(
            () => createLock(trx.target, uniqueKey(), FENCED),
            'ERR_DLOCK_INVALID_OPTION',
          );
        } finally {
          await trx.rollback();
        }
      });
    }

    if (kind.dialect === 'mysql' && !kind.pooled) {
      it('in a transaction or with autocommit off, where a rollback would take the token back, a fenced acquire rejects and keeps no lock', async () => {
        const target = await open();
        const key = uniqueKey();
        const query = sessionQuery('mysql', target);
        const refused = async (where: string) => {
          for (const options of WAYS) {
            const lock = lockOn(target, key);
            await expectRejectCode(lock.acquire(options), UNAVAILABLE);
            expect(lock.locked).to.equal(false);
            expect(
              await suite.inspector.holders(lock.actualKey),
              `${where} ${way(options)}`,
            ).to.equal(0);
            expect(await query('SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
          }
        };
        await query('START TRANSACTION');
        try {
          await refused('in a transaction');
        } finally {
          await query('ROLLBACK');
        }
        await query('SET autocommit = 0');
        try {
          await refused('with autocommit off');
        } finally {
          await query('ROLLBACK');
          await query('SET autocommit = 1');
        }
        const lock = lockOn(target, key);
        expect(await lock.acquire({ block: false }), 'autocommit back on').to.equal(true);
        heldToken(lock);
      });

      it("a fenced acquire refused inside a transaction holds up no other session's grant of the key", async () => {
        const key = uniqueKey();
        const other = lockOn(await open(), key);
        await other.acquire();
        const first = heldToken(other);
        await other.release();
        const target = await open();
        const query = sessionQuery('mysql', target);
        await query('START TRANSACTION');
        let granted: Promise<unknown> | undefined;
        try {
          await expectRejectCode(lockOn(target, key).acquire({ block: false }), UNAVAILABLE);
          // The transaction stays open, and must hold no row of the counter table: a row lock
          // would hold up every other grant of the key until the transaction ends.
          const [own] = await query('SELECT CONNECTION_ID() AS id');
          const observer = await openSession('mysql');
          const rowLocks = await observer
            .query(
              'SELECT trx_rows_locked FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ?',
              [own!.id],
            )
            .finally(() => observer.close());
          expect(rowLocks.map((row) => Number(row.trx_rows_locked))).to.satisfy(
            (counts: number[]) => counts.every((count) => count === 0),
          );
          granted = other.acquire({ block: false }).catch((err: unknown) => err);
          expect(await granted, "the other session's try").to.equal(true);
          expectIncreasing([first, heldToken(other)], 'before, after the refused acquire');
        } finally {
          await query('ROLLBACK');
          await granted;
        }
      });
    }
  });
}

for (const { dialect, client } of DIALECTS) {
  describe(`fencing tokens across processes on ${dialect}`, function () {
    this.timeout(60_000);
    const scope = crossProcessScope(dialect, client, 'dlock_fence');
    let inspector: LockInspector;

    before(async () => {
      inspector = await openInspector(dialect);
    });
    after(() => inspector.close());

    it('4 processes x 50 grants of one key: in grant order the tokens strictly increase', async () => {
      const grants = 50;
      await scope.knex.schema.createTable(scope.table, (t) => {
        t.increments('id'); // written under the lock: numbers the grants in their order
        t.bigInteger('token').notNullable();
        t.integer('worker').notNullable();
        t.integer('seq').notNullable();
      });
      const key = uniqueKey('fenced-record');
      const env = await workerEnv();
      const workers = [0, 1, 2, 3].map((worker) =>
        startNodeScript(
          WORKER,
          ['record', dialect, key, scope.table, String(grants), String(worker)],
          env,
        ),
      );
      await Promise.all(workers.map((worker) => worker.waitForStdout(/ready/, 30_000)));
      for (const worker of workers) worker.child.stdin.end('go\n');
      await Promise.all(workers.map(succeed));

      const rows: { token: unknown; worker: number; seq: number }[] = await scope
        .knex(scope.table)
        .orderBy('id')
        .select('token', 'worker', 'seq');
      expect(rows).to.have.length(4 * grants);
      expectIncreasing(
        rows.map((row) => BigInt(String(row.token))),
        'tokens in grant order',
      );
      for (const worker of [0, 1, 2, 3]) {
        const seqs = rows.filter((row) => Number(row.worker) === worker).map((row) => row.seq);
        expect(seqs, `worker ${worker}'s grants`).to.deep.equal([...Array(grants).keys()]);
      }
      // The workers contended: their grants interleave rather than run one block after another.
      const switches = rows.filter((row, i) => i > 0 && row.worker !== rows[i - 1]!.worker);
      expect(switches.length, 'changes of holder in grant order').to.be.above(3);
    });

    it('a holder killed with SIGKILL: once the server frees its lock, the next grant has a larger token', async () => {
      const key = uniqueKey('killed');
      const lock = createLock(scope.knex, key, FENCED);
      await lock.acquire();
      const first = heldToken(lock);
      await lock.release();

      const holder = startNodeScript(WORKER, ['hold', dialect, key], await workerEnv());
      const [, printed] = await holder.waitForStdout(/held (\S+)\n/, 30_000);
      expect(printed, 'the holder printed its token').to.match(/^\d+$/);
      const killedToken = BigInt(printed!);
      expect(await inspector.holders(lock.actualKey)).to.equal(1);
      holder.child.kill('SIGKILL');
      expect((await holder.exited).signal).to.equal('SIGKILL');
      await until(
        "the killed holder's lock to be freed",
        () => inspector.holders(lock.actualKey),
        (holders) => holders === 0,
        10_000,
      );

      expect(await lock.acquire({ block: false })).to.equal(true);
      expectIncreasing([first, killedToken, heldToken(lock)], 'before, killed holder, after');
      await lock.release();
    });
  });
}

for (const { dialect } of DIALECTS) {
  describe(`a stale holder's write refused by its fencing token on ${dialect}`, () => {
    const demo = `fencing_demo_${process.pid}`;
    let appA: Knex;
    let appB: Knex;
    let inspector: LockInspector;

    before(async () => {
      [appA, appB] = [await openKnex(dialect), await openKnex(dialect)];
      inspector = await openInspector(dialect);
      await appA.schema.dropTableIfExists(demo);
      await appA.schema.createTable(demo, (t) => {
        t.integer('id').primary();
        t.text('value');
        t.bigInteger('fence');
      });
      await appA(demo).insert({ id: 1, value: 'initial', fence: 0 });
    });

    after(async () => {
      await appA.schema.dropTableIfExists(demo);
      await Promise.all([appA.destroy(), appB.destroy(), inspector.close()]);
    });

    /** The write the lock guards: it lands only if no holder with a later token wrote already. */
    function guardedWrite(db: Knex, value: string, token: bigint): Promise<number> {
      return db(demo)
        .where('id', 1)
        .andWhere('fence', '<', String(token))
        .update({ value, fence: String(token) });
    }

    it("A loses its lock while paused; B takes it with a larger token and writes; A's late write changes nothing", async () => {
      const key = uniqueKey('fencing-demo');
      const a = createLock(appA, key, FENCED);
      try {
        expect(await a.acquire()).to.equal(true);
        const tokenA = heldToken(a);
        expect(await guardedWrite(appA, 'A', tokenA), "A's write while it holds").to.equal(1);

        // A pauses (a long GC pause, a stalled VM); meanwhile its lock connection is ended.
        const holders = await inspector.holderIds(a.actualKey);
        expect(holders).to.have.length(1);
        await inspector.kill(holders[0]!);
        await until(
          'the lock to be free',
          () => inspector.holders(a.actualKey),
          (n) => n === 0,
        );

        const b = createLock(appB, key, FENCED);
        expect(await b.acquire({ timeout: 5_000 })).to.equal(true);
        const tokenB = heldToken(b);
        expectIncreasing([tokenA, tokenB], 'A, then B');
        expect(await guardedWrite(appB, 'B', tokenB), "B's write").to.equal(1);

        // A resumes, unaware that it lost the lock, and writes with its old token.
        expect(await guardedWrite(appA, 'A, late', tokenA), "A's stale write").to.equal(0);
        await b.release();

        const row = await appB(demo).where('id', 1).first('value', 'fence');
        expect(row.value).to.equal('B');
        expect(String(row.fence)).to.equal(String(tokenB));
        expect(await inspector.leftovers()).to.deep.equal([]);
      } finally {
        await a.close();
      }
    });
  });
}

/** Opens a knex instance or a plain connection (pg.Client, mysql2/promise) as `user`. */
async function openAs(
  dialect: 'postgres' | 'mysql',
  via: 'knex' | 'connection',
  user: string,
  password: string,
): Promise<OpenTarget> {
  const url = new URL(await urlFor(dialect));
  [url.username, url.password] = [user, password];
  if (via === 'knex') {
    const knex = knexFactory({
      client: dialect === 'postgres' ? 'pg' : 'mysql2',
      connection: url.href,
    });
    return { target: knex, close: () => knex.destroy() };
  }
  if (dialect === 'postgres') {
    const pgClient = new pg.Client({ connectionString: url.href });
    await pgClient.connect();
    return { target: pgClient, close: () => pgClient.end() };
  }
  const conn = await mysqlPromise.createConnection({ uri: url.href });
  return { target: conn, close: () => conn.end() };
}

describe('fencing tokens for a user who may not create the token store', function () {
  let inspectors: Record<'postgres' | 'mysql', LockInspector>;
  let admins: Record<'postgres' | 'mysql', Session>;
  let mysqlDatabase: string;
  const mysqlUser = `'${NO_STORE_USER}'@'%'`;

  async function dropUsers(): Promise<void> {
    const roles = await admins.postgres.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [
      NO_STORE_USER,
    ]);
    // DROP OWNED BY also revokes what the role was granted in this database.
    if (roles.length > 0) await admins.postgres.query(`DROP OWNED BY ${NO_STORE_USER}`);
    await admins.postgres.query(`DROP ROLE IF EXISTS ${NO_STORE_USER}`);
    await admins.mysql.query(`DROP USER IF EXISTS ${mysqlUser}`);
  }

  before(async () => {
    admins = { postgres: await openSession('postgres'), mysql: await openSession('mysql') };
    inspectors = { postgres: await openInspector('postgres'), mysql: await openInspector('mysql') };
    mysqlDatabase = new URL(await urlFor('mysql')).pathname.slice(1);
    await dropUsers();
    await admins.postgres.query(`CREATE ROLE ${NO_STORE_USER} LOGIN`);
    await admins.mysql.query(`CREATE USER ${mysqlUser} IDENTIFIED BY '${NO_STORE_PASSWORD}'`);
    await admins.mysql.query(`GRANT SELECT ON \`${mysqlDatabase}\`.* TO ${mysqlUser}`);
  });

  after(async () => {
    await dropUsers();
    await Promise.all(
      [admins.postgres, admins.mysql, inspectors.postgres, inspectors.mysql].map((x) => x.close()),
    );
  });

  for (const via of ['connection', 'knex'] as const) {
    it(`PostgreSQL (${via}): refused, saying CREATE SEQUENCE, and no lock kept; after setUpFencing and GRANT USAGE, tokens`, async () => {
      const admin = admins.postgres;
      const [may] = await admin.query(
        `SELECT has_schema_privilege($1, 'public', 'CREATE') AS may`,
        [NO_STORE_USER],
      );
      expect(may?.may, 'the role may not create in public').to.equal(false);
      const opened = await openAs('postgres', via, NO_STORE_USER, '');
      try {
        await withoutFencingStore('postgres', async (store) => {
          const lock = createLock(opened.target, uniqueKey('no-rights'), FENCED);
          const refused = async (why: string) => {
            for (const options of WAYS) {
              const err = await expectRejectCode(lock.acquire(options), UNAVAILABLE);
              expect(err.message, `${why} ${way(options)}`).to.include('CREATE SEQUENCE');
              expect(lock.locked).to.equal(false);
              expect(await inspectors.postgres.holders(lock.actualKey), way(options)).to.equal(0);
            }
          };
          await refused('no sequence');
          expect(await store.exists(), 'the role could not create it').to.equal(false);
          await setUpFencing(admin.target);
          await refused('no USAGE');
          await admin.query(`GRANT USAGE ON SEQUENCE ${FENCING_STORE} TO ${NO_STORE_USER}`);
          const tokens: bigint[] = [];
          for (const options of WAYS) {
            expect(await lock.acquire(options), way(options)).to.equal(true);
            tokens.push(heldToken(lock));
            await lock.release();
          }
          expectIncreasing(tokens, 'tokens once granted USAGE');
        });
      } finally {
        await opened.close();
      }
    });

    it(`MySQL (${via}): refused, saying CREATE TABLE, and no lock kept; after setUpFencing and GRANT INSERT, UPDATE, tokens`, async () => {
      const opened = await openAs('mysql', via, NO_STORE_USER, NO_STORE_PASSWORD);
      try {
        await withoutFencingStore('mysql', async (store) => {
          const lock = createLock(opened.target, uniqueKey('no-rights'), FENCED);
          for (const options of WAYS) {
            const err = await expectRejectCode(lock.acquire(options), UNAVAILABLE);
            expect(err.message, way(options)).to.include('CREATE TABLE');
            expect(lock.locked).to.equal(false);
            expect(await inspectors.mysql.holders(lock.actualKey), way(options)).to.equal(0);
          }
          expect(await store.exists(), 'the user could not create it').to.equal(false);
          await setUpFencing(admins.mysql.target);
          await admins.mysql.query(
            `GRANT INSERT, UPDATE ON \`${mysqlDatabase}\`.${FENCING_STORE} TO ${mysqlUser}`,
          );
          const tokens: bigint[] = [];
          for (const options of WAYS) {
            expect(await lock.acquire(options), way(options)).to.equal(true);
            tokens.push(heldToken(lock));
            await lock.release();
          }
          expectIncreasing(tokens, 'tokens once granted INSERT, UPDATE');
        });
      } finally {
        await opened.close();
      }
    });
  }
});

describe("fencing tokens on PostgreSQL's other statement paths (a pg.Client)", () => {
  const sessions: Session[] = [];
  let inspector: LockInspector;
  let waits: LockWaitWatcher;

  before(async () => {
    inspector = await openInspector('postgres');
    waits = await watchLockWaits('postgres');
  });

  after(async () => {
    await inspector.close();
    await waits.close();
  });

  afterEach(async () => {
    const leftovers = await inspector.leftovers();
    await Promise.all(sessions.splice(0).map((session) => session.close()));
    expect(leftovers, 'locks left held after the test').to.deep.equal([]);
  });

  async function session(): Promise<Session> {
    const opened = await openSession('postgres');
    sessions.push(opened);
    return opened;
  }

  /** Holds `key` on another session, then acquires it with `options` once its wait shows. */
  async function contended(lock: BaseLock, options: object): Promise<bigint[]> {
    const holder = createLock((await session()).target, lock.key as string, FENCED);
    expect(await holder.acquire()).to.equal(true);
    const before = heldToken(holder);
    const acquiring = lock.acquire(options);
    await waits.waitFor(lock.actualKey);
    await holder.release();
    expect(await acquiring).to.equal(true);
    return [before, heldToken(lock)];
  }

  it('preparedStatements: false: try, wait and timed, free and contended', async () => {
    const lock = createLock((await session()).target, uniqueKey('unprepared'), {
      fencing: true,
      preparedStatements: false,
    });
    const tokens: bigint[] = [];
    for (const options of WAYS) {
      expect(await lock.acquire(options), way(options)).to.equal(true);
      tokens.push(heldToken(lock));
      await lock.release();
      if ('block' in options) continue; // a try does not wait
      tokens.push(...(await contended(lock, options)));
      await lock.release();
    }
    expectIncreasing(tokens, 'unprepared grants');
  });

  it('a session with a statement_timeout: its contended waits lift it and still take a token', async () => {
    const own = await session();
    await own.query("SET statement_timeout = '30s'");
    const lock = createLock(own.target, uniqueKey('statement-timeout'), FENCED);
    const tokens = [...(await contended(lock, {}))];
    await lock.release();
    tokens.push(...(await contended(lock, { timeout: 5_000 })));
    await lock.release();
    expectIncreasing(tokens, 'grants after waits that lift statement_timeout');
  });

  it('inside BEGIN: a contended wait (the savepoint script) takes a token, session and xact level', async () => {
    const own = await session();
    await own.query('BEGIN');
    const key = uniqueKey('in-begin');
    const sessionLevel = createLock(own.target, key, FENCED);
    const tokens = [...(await contended(sessionLevel, { timeout: 5_000 }))];
    await sessionLevel.release();
    const xact = createLock(own.target, key, { fencing: true, xact: true });
    tokens.push(...(await contended(xact, {})));
    await own.query('COMMIT');
    expect(xact.locked).to.equal(false);
    expectIncreasing(tokens, 'grants inside BEGIN');
  });
});
