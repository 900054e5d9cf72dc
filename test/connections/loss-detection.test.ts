/**
 * Silent faults, with real packet loss: the lock connection's packets are dropped both ways
 * (iptables on loopback, that one connection only). With default options the holder learns
 * first, within `detect`; the server frees the key within `free`, and never before the holder
 * knows, by the margin. A holder that is stalled but connected keeps its lock on PostgreSQL and
 * loses it, visibly, on MySQL / MariaDB once the stall outlasts `wait_timeout`.
 */
import { expect } from 'chai';
import knexFactory from 'knex';
import mysql from 'mysql2';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  configureLockConnections,
  createLock,
  inspectLock,
  type BaseLock,
  type LossDetection,
} from '../../src/index.js';
import { blackHole, blackHoleUnavailable, portOf } from '../support/black-hole.js';
import { countTraffic, expectNothingSent } from '../support/counting.js';
import { databaseUrls } from '../support/databases.js';
import { abortedWithin, expectThrowCode, sleep } from '../support/expect.js';
import { startNodeScript } from '../support/processes.js';
import { uniqueKey, type DialectName } from '../support/targets.js';

const STALL_HOLDER = fileURLToPath(new URL('../fixtures/stall-holder.ts', import.meta.url));
const DETECT_MS = 2_500;
/** Defaults: when the server may free a silent holder's key soonest, and at the latest. */
const SERVER = {
  postgres: { soonest: 11_000, free: 12_000 },
  mysql: { soonest: 30_000, free: 31_000 },
} as const;
/** Timers and the observer's polling run a little late; the bounds are checked with this slack. */
const SLACK_MS = 400;
const POLL_MS = 50;
const unavailable = blackHoleUnavailable();

interface Observer {
  readonly target: object;
  close(): Promise<void>;
}

async function urlOf(dialect: DialectName): Promise<URL> {
  const urls = await databaseUrls();
  return new URL(dialect === 'postgres' ? urls.pg : urls.mysql);
}

/** A connection of the test's own, outside every bound, that inspects and tries keys. */
async function openObserver(dialect: DialectName): Promise<Observer> {
  const url = (await urlOf(dialect)).href;
  if (dialect === 'postgres') {
    const client = new pg.Client(url);
    await client.connect();
    return { target: client, close: () => client.end() };
  }
  const connection = mysql.createConnection(url);
  return { target: connection, close: () => connection.promise().end() };
}

function openTarget(dialect: DialectName, kind: 'knex' | 'pool', url: string) {
  if (kind === 'knex') {
    const knex = knexFactory({
      client: dialect === 'postgres' ? 'pg' : 'mysql2',
      connection: url,
      pool: { min: 0, max: 2 },
    });
    return { target: knex as object, close: () => knex.destroy() };
  }
  if (dialect === 'postgres') {
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    return { target: pool as object, close: () => pool.end() };
  }
  const pool = mysql.createPool({ uri: url, connectionLimit: 2 });
  return { target: pool as object, close: () => pool.promise().end() };
}

/** The client port of the session that holds `key`, as the server reports it. */
async function holderPort(observer: Observer, key: string): Promise<number> {
  const { holders } = await inspectLock(observer.target, key);
  expect(holders, `holders of ${key}`).to.have.length(1);
  return portOf(holders[0]!.clientAddress);
}

/** Tries `key` from the observer until it wins (then lets it go); resolves the time it won. */
async function takenAt(observer: Observer, key: string, within: number): Promise<number> {
  const giveUp = performance.now() + within;
  for (;;) {
    const lock = createLock(observer.target, key);
    if (await lock.acquire({ block: false })) {
      const at = performance.now();
      await lock.release();
      return at;
    }
    if (performance.now() > giveUp) throw new Error(`${key} was not freed within ${within} ms`);
    await sleep(POLL_MS); // Paces the polling; the outcome is what the server answers.
  }
}

interface Partitioned {
  /** Milliseconds from the black hole to the holder's abort, and to another session's grant. */
  readonly lost: number;
  readonly freed: number;
}

/** Black-holes the connection holding `lock`, and measures who learns what when. */
async function partition(
  dialect: DialectName,
  lock: BaseLock,
  observer: Observer,
  free: number,
): Promise<Partitioned> {
  const port = await holderPort(observer, String(lock.key));
  const hole = blackHole(port, Number((await urlOf(dialect)).port));
  const start = performance.now();
  try {
    const [reason, freedAt] = await Promise.all([
      abortedWithin(lock.signal!, free),
      takenAt(observer, String(lock.key), free + 5_000),
    ]);
    expect(reason).to.have.property('code', 'ERR_DLOCK_LOST');
    return { lost: lockLostAt.get(lock)! - start, freed: freedAt - start };
  } finally {
    hole.close();
  }
}

/** When each lock's signal aborted, recorded the moment it did. */
const lockLostAt = new WeakMap<BaseLock, number>();
function recordLoss(lock: BaseLock): void {
  lock.signal!.addEventListener('abort', () => lockLostAt.set(lock, performance.now()));
}

function expectOrdered(result: Partitioned, dialect: DialectName, label: string): void {
  const { soonest, free } = SERVER[dialect];
  const detail = `${label}: lost after ${Math.round(result.lost)} ms, freed after ${Math.round(result.freed)} ms`;
  // The figures that docs/failure-semantics.md reports.
  console.log(`      ${dialect}, ${detail}`);
  expect(result.lost, detail).to.be.below(DETECT_MS + SLACK_MS);
  expect(result.freed, detail).to.be.below(free + SLACK_MS + POLL_MS);
  // The holder's last answered check came at most `detect` before its abort and the server
  // counts its bound from there: the abort comes first by at least the margin.
  expect(result.freed - result.lost, detail).to.be.at.least(soonest - DETECT_MS - SLACK_MS);
}

for (const dialect of ['postgres', 'mysql'] as const) {
  describe(`silent faults on ${dialect === 'postgres' ? 'PostgreSQL' : 'MySQL / MariaDB'}`, function () {
    this.timeout(SERVER[dialect].free + 30_000);
    let observer: Observer;
    before(async function () {
      if (unavailable) {
        console.log(`      skipped: ${unavailable}`);
        this.skip();
      }
      observer = await openObserver(dialect);
    });
    after(() => observer?.close());

    it('default locks on knex, a pool and a dedicated connection: the holder learns first, the key is freed in time', async () => {
      const url = (await urlOf(dialect)).href;
      const cases = [
        { label: 'knex instance', kind: 'knex' as const, options: {} },
        { label: 'pool', kind: 'pool' as const, options: {} },
        {
          label: "knex, connection: 'dedicated'",
          kind: 'knex' as const,
          options: { connection: 'dedicated' as const },
        },
      ];
      const opened = cases.map((c) => ({ ...c, ...openTarget(dialect, c.kind, url) }));
      try {
        const locks = await Promise.all(
          opened.map(async (c) => {
            const lock = createLock(c.target, uniqueKey('silent'), c.options);
            expect(await lock.acquire()).to.equal(true);
            recordLoss(lock);
            return lock;
          }),
        );
        const results = await Promise.all(
          locks.map((lock) => partition(dialect, lock, observer, SERVER[dialect].free)),
        );
        results.forEach((result, i) => expectOrdered(result, dialect, opened[i]!.label));
        for (const lock of locks) await lock.close();
      } finally {
        await Promise.all(opened.map((c) => c.close()));
      }
    });

    it('many locks on one lock connection: one black hole, every lock aborts, every key is freed', async () => {
      const knex = openTarget(dialect, 'knex', (await urlOf(dialect)).href);
      const free = 6_000;
      configureLockConnections(knex.target, { max: 1, lossDetection: { free } });
      try {
        const locks = Array.from({ length: 50 }, () => createLock(knex.target, uniqueKey('many')));
        for (const lock of locks) expect(await lock.acquire({ block: false })).to.equal(true);
        locks.forEach(recordLoss);
        const port = await holderPort(observer, String(locks[0]!.key));
        for (const lock of locks.slice(1)) {
          expect(await holderPort(observer, String(lock.key)), 'one lock connection').to.equal(
            port,
          );
        }
        const hole = blackHole(port, Number((await urlOf(dialect)).port));
        const start = performance.now();
        try {
          await Promise.all(locks.map((lock) => abortedWithin(lock.signal!, DETECT_MS + SLACK_MS)));
          const lastLoss = Math.max(...locks.map((lock) => lockLostAt.get(lock)!)) - start;
          const firstFree = (await takenAt(observer, String(locks[0]!.key), free + 5_000)) - start;
          expect(firstFree - lastLoss).to.be.at.least(1_000);
          for (const lock of locks) await takenAt(observer, String(lock.key), 1_000);
        } finally {
          hole.close();
        }
        for (const lock of locks) expect(lock.locked).to.equal(false);
      } finally {
        await knex.close();
      }
    });

    it('a batch of releases sent as its lock connection goes silent: each release rejects ERR_DLOCK_LOST, every key is freed', async () => {
      const knex = openTarget(dialect, 'knex', (await urlOf(dialect)).href);
      const free = 6_000;
      configureLockConnections(knex.target, { max: 1, lossDetection: { free } });
      const counter = countTraffic(knex.target);
      try {
        const locks = Array.from({ length: 5 }, () => createLock(knex.target, uniqueKey('batch')));
        // Taken at once: one batch, on the one lock connection.
        const acquired = await Promise.all(locks.map((lock) => lock.acquire({ block: false })));
        expect(acquired).to.deep.equal(locks.map(() => true));
        locks.forEach(recordLoss);
        const port = await holderPort(observer, String(locks[0]!.key));
        const hole = blackHole(port, Number((await urlOf(dialect)).port));
        try {
          counter.takeCalls();
          const outcomes = await Promise.allSettled(locks.map((lock) => lock.release()));
          const unlocks = counter
            .takeCalls()
            .filter((call) => /unlock|RELEASE_LOCK/i.test(call.sql));
          expect(unlocks, 'one statement for the five releases').to.have.length(1);
          for (const outcome of outcomes) {
            expect(outcome.status).to.equal('rejected');
            expect((outcome as PromiseRejectedResult).reason).to.have.property(
              'code',
              'ERR_DLOCK_LOST',
            );
          }
          for (const lock of locks) {
            expect(lock.signal!.aborted).to.equal(true);
            await takenAt(observer, String(lock.key), free + 5_000);
          }
        } finally {
          hole.close();
        }
        // The next lock gets a new lock connection.
        const next = createLock(knex.target, uniqueKey('batch-next'));
        expect(await next.acquire({ block: false })).to.equal(true);
        await next.release();
      } finally {
        counter.detach();
        await knex.close();
      }
    });
  });
}

describe('silent faults: a stalled holder', function () {
  this.timeout(40_000);

  async function stalledFor(dialect: DialectName, free: number, stallMs: number) {
    const key = uniqueKey('stalled');
    const urls = await databaseUrls();
    const holder = startNodeScript(STALL_HOLDER, [dialect, key, String(free)], {
      DLOCK_PG_URL: urls.pg,
      DLOCK_MYSQL_URL: urls.mysql,
    });
    await holder.waitForStdout(/held\n/, 15_000);
    const observer = await openObserver(dialect);
    try {
      process.kill(holder.pid, 'SIGSTOP');
      const stoppedAt = performance.now();
      let takenAfter: number | undefined;
      let tries = 0;
      while (performance.now() - stoppedAt < stallMs) {
        tries += 1;
        const lock = createLock(observer.target, key);
        if (await lock.acquire({ block: false })) {
          takenAfter ??= performance.now() - stoppedAt;
          await lock.release();
          break;
        }
        await sleep(200); // Paces the tries while the holder is stopped.
      }
      if (takenAfter !== undefined) {
        // Stay stopped past the stall anyway, as the scenario says.
        await sleep(Math.max(0, stallMs - (performance.now() - stoppedAt)));
      }
      process.kill(holder.pid, 'SIGCONT');
      holder.child.stdin.write('resumed\n');
      const [line] = await holder.waitForStdout(/\{.*\}\n/, 10_000);
      await holder.exited;
      return { takenAfter, tries, seen: JSON.parse(line) as Record<string, unknown> };
    } finally {
      try {
        process.kill(holder.pid, 'SIGCONT');
      } catch {
        // Already gone.
      }
      await observer.close();
    }
  }

  it('PostgreSQL: stopped for longer than free, it still holds its lock and nobody took it', async () => {
    const free = 5_000;
    const { takenAfter, tries, seen } = await stalledFor('postgres', free, free + 3_000);
    expect(tries).to.be.greaterThan(10);
    expect(takenAfter, 'another session took the key').to.equal(undefined);
    expect(seen).to.deep.equal({ locked: true, aborted: false, release: 'released' });
  });

  it('MySQL / MariaDB: stopped past wait_timeout, the server frees the key, and on resuming the holder sees ERR_DLOCK_LOST before release()', async () => {
    const free = 5_000;
    const { takenAfter, seen } = await stalledFor('mysql', free, free + 3_000);
    // wait_timeout is 4 s for free = 5 s: the server ends the stopped holder's session then.
    expect(takenAfter, 'another session took the key').to.be.within(3_500, free + 1_000);
    expect(seen).to.deep.equal({ locked: false, aborted: true, release: 'ERR_DLOCK_LOST' });
  });
});

describe('silent faults: health check traffic', () => {
  for (const dialect of ['postgres', 'mysql'] as const) {
    it(`${dialect}: none while nothing is held, at most one check a second while held`, async function () {
      this.timeout(20_000);
      const knex = openTarget(dialect, 'knex', (await urlOf(dialect)).href);
      const counter = countTraffic(knex.target);
      try {
        const lock = createLock(knex.target, uniqueKey('traffic'));
        expect(await lock.acquire()).to.equal(true);
        // A quiet window is the subject here: it shows what the health check sends.
        const held = await counter.measure(() => sleep(3_500));
        expect(held.counts.roundTrips).to.be.within(2, 4);
        await lock.release();
        const idle = await counter.measure(() => sleep(2_500));
        expect(idle.counts.roundTrips).to.equal(0);
      } finally {
        counter.detach();
        await knex.close();
      }
    });
  }
});

describe('silent faults: options', () => {
  const bad: [string, unknown][] = [
    ['a number', 5_000],
    ['an unknown field', { detectMs: 1 }],
    ['detect below 100 ms', { detect: 50 }],
    ['free that is not a number', { free: '10s' }],
  ];
  for (const [what, value] of bad) {
    it(`lossDetection as ${what} throws ERR_DLOCK_INVALID_OPTION before any query`, async () => {
      const client = new pg.Client((await urlOf('postgres')).href);
      await client.connect();
      try {
        await expectNothingSent(client, async () =>
          expectThrowCode(
            () => createLock(client, 'k', { lossDetection: value as LossDetection }),
            'ERR_DLOCK_INVALID_OPTION',
          ),
        );
      } finally {
        await client.end();
      }
    });
  }

  it('a free that would let the server free the key before the holder knows throws', async () => {
    const pool = new pg.Pool({ connectionString: (await urlOf('postgres')).href });
    try {
      const error = expectThrowCode(
        () => createLock(pool, 'k', { connection: 'dedicated', lossDetection: { free: 3_000 } }),
        'ERR_DLOCK_INVALID_OPTION',
      );
      expect(error.message).to.match(/raise free, or lower detect/);
      expectThrowCode(
        () => createLock(pool, 'k', { lossDetection: { free: 20_000 } }),
        'ERR_DLOCK_INVALID_OPTION',
      );
    } finally {
      await pool.end();
    }
  });
});
