/**
 * The MySQL-only behaviours of the MySQL dialect, each run as one scenario against two servers:
 * - the scripted MySQL 8 stand-in (test/support/scripted-mysql8-session.ts), because no MySQL 8
 *   server can be run where this project is developed;
 * - the real server of the test run (DLOCK_MYSQL_URL, else the local one): MariaDB in
 *   development, MySQL 8 when a maintainer points DLOCK_MYSQL_URL at one.
 * Each scenario asks the server for its flavour (SELECT VERSION()) and expects that flavour's
 * behaviour, so where MariaDB behaves as MySQL does the real server checks the stand-in, and
 * against a real MySQL 8 every MySQL branch runs for real.
 */
import { expect } from 'chai';
import mysqlCallback from 'mysql2';
import mysqlPromise from 'mysql2/promise';
import type { Wait } from '../../src/dialects/dialect.js';
import { mysqlDialect, mysqlName, serverFlavor } from '../../src/dialects/mysql/dialect.js';
import { mysqlInspection } from '../../src/dialects/mysql/inspect.js';
import { mysqlConnectionDriver, type MysqlConnectionLike } from '../../src/drivers/mysql2.js';
import type { Row, SqlSession } from '../../src/drivers/types.js';
import { LockDatabaseError, LockDeadlockError } from '../../src/errors.js';
import { databaseUrls } from '../support/databases.js';
import { expectRejectCode } from '../support/expect.js';
import { askFlavor, type MysqlFlavor } from '../support/mysql-flavor.js';
import { ScriptedMysql8Server } from '../support/scripted-mysql8-session.js';
import { until, waitForMysqlLockWait } from '../support/server-state.js';

const EXCLUSIVE = { shared: false, xact: false };
const TRY: Wait = { kind: 'try' };
const FOREVER: Wait = { kind: 'forever' };

/** A session that records what it was sent, and the connection id the server knows it by. */
interface Opened {
  readonly session: SqlSession;
  readonly connectionId: number;
  /** The lock functions sent so far, e.g. ['GET_LOCK', 'RELEASE_LOCK'], and their parameters. */
  readonly sent: { readonly fn: string; readonly params: readonly unknown[] }[];
  close(): Promise<void>;
}

function recorded(session: SqlSession, connectionId: number, close: () => Promise<void>): Opened {
  const sent: Opened['sent'] = [];
  const recording: SqlSession = {
    get connection() {
      return session.connection;
    },
    get serverVersion() {
      return session.serverVersion;
    },
    get serverId() {
      return session.serverId;
    },
    get memo() {
      return session.memo;
    },
    query(sql, params, statementName) {
      sent.push({ fn: /\b([A-Z_]+)\(/.exec(sql)?.[1] ?? sql, params: params ?? [] });
      return session.query(sql, params, statementName);
    },
    inTransaction: () => session.inTransaction(),
    openSibling: () => session.openSibling(),
    ping: session.ping,
  };
  return { session: recording, connectionId, sent, close };
}

interface Server {
  readonly name: string;
  open(): Promise<Opened>;
  /** Resolves once the server shows `waiter` waiting in GET_LOCK. */
  waiting(waiter: Opened): Promise<unknown>;
}

const standIn = new ScriptedMysql8Server();

const SERVERS: readonly Server[] = [
  {
    name: 'the scripted MySQL 8 stand-in',
    async open() {
      const session = standIn.connect();
      return recorded(session, session.connectionId, async () => session.close());
    },
    waiting: (waiter) =>
      until(
        `the stand-in should show connection ${waiter.connectionId} waiting`,
        () => standIn.waitingConnections(),
        (ids) => ids.includes(waiter.connectionId),
      ),
  },
  {
    name: 'the real server (DLOCK_MYSQL_URL, else the local one)',
    async open() {
      const conn = mysqlCallback.createConnection({ uri: (await databaseUrls()).mysql });
      conn.on('error', () => undefined);
      await new Promise<void>((resolve, reject) =>
        conn.connect((err) => (err ? reject(err) : resolve())),
      );
      const like = conn as unknown as MysqlConnectionLike;
      const lease = await mysqlConnectionDriver(like, 'mysql2').lease();
      return recorded(lease.session, conn.threadId!, async () => {
        await lease.release();
        await new Promise<void>((resolve) => conn.end(() => resolve()));
      });
    },
    async waiting(waiter) {
      const inspector = await mysqlPromise.createConnection({ uri: (await databaseUrls()).mysql });
      try {
        return await waitForMysqlLockWait(inspector, { threadId: waiter.connectionId });
      } finally {
        await inspector.end();
      }
    },
  },
];

let nameCounter = 0;
/** A lock name of mixed case, unique to this run. */
function uniqueName(label: string): string {
  nameCounter += 1;
  return `dlock-MySQL8:${label}:${process.pid}:${Date.now()}:${nameCounter}`;
}

const rowsOf = async (session: SqlSession, sql: string, params?: unknown[]): Promise<Row[]> =>
  (await session.query(sql, params))[0] ?? [];

/** The connection id holding `name`, or null. */
async function holderOf(opened: Opened, name: string): Promise<number | null> {
  const [row] = await rowsOf(opened.session, 'SELECT IS_USED_LOCK(?) AS holder', [name]);
  return row?.holder === null || row?.holder === undefined ? null : Number(row.holder);
}

const acquire = (opened: Opened, name: string, wait: Wait, cancelled = () => false) =>
  mysqlDialect
    .acquire(opened.session, name, EXCLUSIVE, wait, cancelled)
    .then((grant) => grant !== false);
const release = (opened: Opened, name: string) =>
  mysqlDialect.release(opened.session, name, EXCLUSIVE);

for (const server of SERVERS) {
  describe(`MySQL dialect, MySQL-only paths, on ${server.name}`, () => {
    let flavor: MysqlFlavor;
    const opened: Opened[] = [];
    const names: string[] = [];

    async function open(): Promise<Opened> {
      const session = await server.open();
      opened.push(session);
      return session;
    }

    function name(label: string): string {
      const made = uniqueName(label);
      names.push(made);
      return made;
    }

    before(async () => {
      const probe = await server.open();
      flavor = await askFlavor((sql) => rowsOf(probe.session, sql));
      await probe.close();
    });

    afterEach(async () => {
      // Checked from a session of its own before the test's close, which would free everything.
      const probe = await server.open();
      const held: string[] = [];
      for (const n of names.splice(0)) if ((await holderOf(probe, n)) !== null) held.push(n);
      await probe.close();
      await Promise.all(opened.splice(0).map((session) => session.close()));
      expect(held, 'names left held after the test').to.deep.equal([]);
    });

    it('the driver reports the flavour that SELECT VERSION() names', async () => {
      expect(serverFlavor((await open()).session)).to.equal(flavor);
    });

    it('a 200 ms wait is GET_LOCK(name, 1) on MySQL (whole seconds, rounded up), GET_LOCK(name, 0.2) on MariaDB, and gives up after it', async () => {
      const n = name('timeout');
      const [holder, waiter] = [await open(), await open()];
      expect(await acquire(holder, n, TRY)).to.equal(true);
      const started = performance.now();
      expect(await acquire(waiter, n, { kind: 'timed', ms: 200 })).to.equal(false);
      const elapsed = performance.now() - started;
      const seconds = flavor === 'mysql' ? 1 : 0.2;
      expect(waiter.sent).to.deep.equal([{ fn: 'GET_LOCK', params: [n, seconds] }]);
      expect(elapsed).to.be.within(seconds * 1000 - 20, seconds * 1000 + 500);
      expect(await holderOf(waiter, n)).to.equal(holder.connectionId);
      expect(await release(holder, n)).to.equal(true);
    });

    it('a deadlock between two waits is ERR_DLOCK_DEADLOCK (MySQL 3058, MariaDB 1213); the victim keeps only what it held', async () => {
      const [a, b] = [name('deadlock-a'), name('deadlock-b')];
      const [first, second] = [await open(), await open()];
      expect(await acquire(first, a, TRY)).to.equal(true);
      expect(await acquire(second, b, TRY)).to.equal(true);
      const waits = [acquire(first, b, FOREVER)];
      await server.waiting(first);
      waits.push(acquire(second, a, FOREVER));
      const settled = await Promise.race(
        waits.map((wait, index) =>
          wait.then(
            () => ({ index, err: undefined as unknown }),
            (err: unknown) => ({ index, err }),
          ),
        ),
      );
      expect(settled.err).to.be.instanceOf(LockDeadlockError);
      expect(settled.err).to.have.property('code', 'ERR_DLOCK_DEADLOCK');
      const cause = (settled.err as Error).cause;
      expect(cause).to.have.property('errno', flavor === 'mysql' ? 3058 : 1213);
      const [victim, survivor] = settled.index === 0 ? [first, second] : [second, first];
      const [victimHeld, survivorHeld] = settled.index === 0 ? [a, b] : [b, a];
      expect(await release(victim, victimHeld)).to.equal(true);
      expect(await waits[1 - settled.index]).to.equal(true);
      expect(await release(survivor, victimHeld)).to.equal(true);
      expect(await release(survivor, survivorHeld)).to.equal(true);
    });

    it('a wait this attempt cancels with KILL QUERY resolves false and holds nothing (MySQL: 1317, then RELEASE_LOCK; MariaDB: NULL)', async () => {
      const n = name('cancelled');
      const [holder, waiter] = [await open(), await open()];
      expect(await acquire(holder, n, TRY)).to.equal(true);
      let cancelled = false;
      const waiting = acquire(waiter, n, FOREVER, () => cancelled);
      await server.waiting(waiter);
      cancelled = true;
      await mysqlDialect.cancel(waiter.session);
      expect(await waiting).to.equal(false);
      const fns = waiter.sent.map((s) => s.fn);
      expect(fns).to.deep.equal(flavor === 'mysql' ? ['GET_LOCK', 'RELEASE_LOCK'] : ['GET_LOCK']);
      expect(await holderOf(waiter, n)).to.equal(holder.connectionId);
      expect(await release(holder, n)).to.equal(true);
      expect(await holderOf(waiter, n)).to.equal(null);
    });

    it('a wait killed by someone else rejects with ERR_DLOCK_DATABASE (MySQL: cause 1317) and holds nothing', async () => {
      const n = name('killed');
      const [holder, waiter] = [await open(), await open()];
      expect(await acquire(holder, n, TRY)).to.equal(true);
      const waiting = acquire(waiter, n, FOREVER, () => false);
      await server.waiting(waiter);
      await mysqlDialect.cancel(waiter.session);
      const err = await expectRejectCode(waiting, 'ERR_DLOCK_DATABASE');
      expect(err).to.be.instanceOf(LockDatabaseError);
      if (flavor === 'mysql') expect(err.cause).to.have.property('errno', 1317);
      expect(await release(holder, n)).to.equal(true);
      expect(await holderOf(waiter, n)).to.equal(null);
    });

    it('names that differ only in case are one lock on MySQL, two on MariaDB; names travel as given', async () => {
      const mixed = name('Case-Fold');
      const lower = mixed.toLowerCase();
      names.push(lower);
      expect(mysqlName(mixed)).to.equal(mixed);
      const [first, second] = [await open(), await open()];
      expect(await acquire(first, mixed, TRY)).to.equal(true);
      const { holders } = await mysqlInspection.sessions(second.session, lower);
      const took = await acquire(second, lower, TRY);
      if (flavor === 'mysql') {
        expect(holders.map((h) => h.sessionId)).to.deep.equal([first.connectionId]);
        expect(took).to.equal(false);
        // The holder's lock answers to either spelling.
        expect(await release(first, lower)).to.equal(true);
      } else {
        expect(holders).to.deep.equal([]);
        expect(took).to.equal(true);
        expect(await release(second, lower)).to.equal(true);
        expect(await release(first, mixed)).to.equal(true);
      }
    });
  });
}

describe('MySQL dialect on the scripted MySQL 8 stand-in only (not reproducible on demand)', () => {
  const server = new ScriptedMysql8Server();
  afterEach(() => expect(server.heldNames(), 'names left held').to.deep.equal([]));

  it('a KILL QUERY landing after the grant (1317, name held) resolves false and releases the name', async () => {
    const [holder, waiter] = [server.connect(), server.connect()];
    const n = uniqueName('late-kill');
    expect(await mysqlDialect.acquire(holder, n, EXCLUSIVE, TRY, () => false)).to.not.equal(false);
    let cancelled = false;
    const waiting = mysqlDialect.acquire(waiter, n, EXCLUSIVE, FOREVER, () => cancelled);
    await until(
      'the waiter should wait',
      () => server.waitingConnections(),
      (ids) => ids.includes(waiter.connectionId),
    );
    cancelled = true;
    waiter.interruptAfterGrant();
    expect(await mysqlDialect.release(holder, n, EXCLUSIVE)).to.equal(true);
    expect(await waiting).to.equal(false);
    expect(waiter.statements.map((s) => /\b([A-Z_]+)\(/.exec(s.sql)?.[1])).to.deep.equal([
      'GET_LOCK',
      'RELEASE_LOCK',
    ]);
    expect(server.holderOf(n)).to.equal(undefined);
  });

  it('3058 without a cycle the stand-in can see (scripted) is still ERR_DLOCK_DEADLOCK', async () => {
    const session = server.connect();
    session.failNextGetLock('deadlock');
    const err = await expectRejectCode(
      mysqlDialect.acquire(session, uniqueName('scripted-3058'), EXCLUSIVE, FOREVER, () => false),
      'ERR_DLOCK_DEADLOCK',
    );
    expect(err.cause).to.include({ errno: 3058, code: 'ER_USER_LOCK_DEADLOCK' });
    expect(server.heldNames()).to.deep.equal([]);
  });

  it('reads a fractional timeout as MySQL does (0.2 → 0, a try): why the dialect rounds up', async () => {
    const [holder, waiter] = [server.connect(), server.connect()];
    const n = uniqueName('fraction');
    await holder.query('SELECT GET_LOCK(?, ?) AS acquired', [n, 0]);
    const started = performance.now();
    const [rows] = await waiter.query('SELECT GET_LOCK(?, ?) AS acquired', [n, 0.2]);
    expect(rows).to.deep.equal([{ acquired: 0 }]);
    expect(performance.now() - started).to.be.below(50);
    holder.close();
  });
});
