/**
 * Locks of pooled targets on the library's own lock connections (`connection: 'multiplexed'`,
 * the default): the application's pool is never starved, many locks share few connections,
 * waiters for one key queue in memory, and a lost lock connection takes its locks with it.
 */
import { expect } from 'chai';
import {
  closeLockConnections,
  createLock,
  lockConnectionStats,
  withLock,
} from '../../src/index.js';
import { abortedWithin, sleep } from '../support/expect.js';
import { DIALECTS, lockConnectionScope, until } from '../support/lock-connections.js';
import { holdLock, openSession } from '../support/sessions.js';
import { TARGET_KINDS, uniqueKey } from '../support/targets.js';

for (const { dialect, name } of DIALECTS) {
  describe(`lock connections on ${name}`, () => {
    const scope = lockConnectionScope(dialect);
    const { cleanups, knexFor } = scope;

    async function otherHolder(key: string) {
      const held = await holdLock(dialect, key);
      cleanups.push(() => held.close());
      return held;
    }

    it('200 withLock calls on 20 keys through a knex pool of 4 all succeed: locks never take the pool', async function () {
      this.timeout(30_000);
      const knex = await knexFor({ pool: { min: 0, max: 4 }, acquireConnectionTimeout: 5_000 });
      const keys = Array.from({ length: 20 }, () => uniqueKey('starve'));
      const inside = new Map<string, number>();
      let overlaps = 0;
      let maxConnections = 0;
      const results = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) =>
          withLock(knex, keys[i % keys.length]!, async () => {
            const key = keys[i % keys.length]!;
            const holders = (inside.get(key) ?? 0) + 1;
            inside.set(key, holders);
            if (holders > 1) overlaps += 1;
            maxConnections = Math.max(maxConnections, lockConnectionStats(knex).connections);
            await knex.raw('select 1');
            inside.set(key, inside.get(key)! - 1);
            return i;
          }),
        ),
      );
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
      expect(failures).to.deep.equal([]);
      expect(overlaps, 'callbacks that ran while another held their key').to.equal(0);
      expect(maxConnections).to.be.within(1, 8);
    });

    it("with connection: 'pool' the same kind of load starves the pool and calls fail", async function () {
      this.timeout(20_000);
      const knex = await knexFor({
        pool: { min: 0, max: 4 },
        acquireConnectionTimeout: 500,
        quiet: true,
      });
      const keys = Array.from({ length: 4 }, () => uniqueKey('starve-pool'));
      const results = await Promise.allSettled(
        Array.from({ length: 40 }, (_, i) =>
          withLock(knex, keys[i % keys.length]!, () => knex.raw('select 1'), {
            connection: 'pool',
          }),
        ),
      );
      const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      expect(reasons.length).to.be.greaterThan(0);
      const poolTimeouts = reasons.filter(
        (err: { name?: string; cause?: { name?: string } }) =>
          err?.name === 'KnexTimeoutError' || err?.cause?.name === 'KnexTimeoutError',
      );
      expect(poolTimeouts.length).to.be.greaterThan(0);
    });

    it('200 waiters on one key: each acquires once, one holder at a time, at most one waits in the database', async function () {
      this.timeout(30_000);
      const knex = await knexFor();
      const key = uniqueKey('queue');
      const other = await otherHolder(key);
      const actual = other.lock.actualKey;
      const acquiredTimes = new Array<number>(200).fill(0);
      let holding = 0;
      let maxHolding = 0;
      const runs = Array.from({ length: 200 }, async (_, i) => {
        const lock = createLock(knex, key);
        const acquired = await lock.acquire();
        if (acquired) acquiredTimes[i]! += 1;
        holding += 1;
        maxHolding = Math.max(maxHolding, holding);
        // Held across a timer turn, so that a second holder at the same time would be counted.
        await sleep(1);
        holding -= 1;
        await lock.release();
      });
      const all = Promise.all(runs);
      all.catch(() => undefined);

      // Every waiter but the first queued in memory; the first waits in the database.
      await until(
        'all 199 behind the first queued',
        () => lockConnectionStats(knex).queued,
        (queued) => queued === 199,
        10_000,
      );
      const samples: number[] = [];
      samples.push(
        await until(
          'one database wait',
          () => scope.probe.waitingFor([actual]),
          (n) => n === 1,
        ),
      );

      let done = false;
      const duringRun: number[] = [];
      const sampler = (async () => {
        while (!done) duringRun.push(await scope.probe.waitingFor([actual]));
      })();
      await other.close();
      try {
        await all;
      } finally {
        done = true;
        await sampler;
      }
      samples.push(...duringRun);
      expect(acquiredTimes.every((n) => n === 1)).to.equal(true);
      expect(maxHolding).to.equal(1);
      expect(Math.max(...samples)).to.be.at.most(1);
      expect(samples.filter((n) => n === 1).length).to.be.greaterThan(0);
      expect(duringRun.length, 'samples taken while the waiters took turns').to.be.greaterThan(0);
      expect(lockConnectionStats(knex)).to.include({ holds: 0, queued: 0, waiting: 0 });
    });

    it('killing the lock connections under 50 held locks aborts every lock.signal within 1 s', async function () {
      this.timeout(20_000);
      const knex = await knexFor();
      const lost: unknown[] = [];
      const locks = Array.from({ length: 50 }, () =>
        createLock(knex, uniqueKey('kill'), { onLost: (err) => lost.push(err) }),
      );
      expect(await Promise.all(locks.map((lock) => lock.acquire()))).to.deep.equal(
        locks.map(() => true),
      );
      const signals = locks.map((lock) => lock.signal!);
      const ids = [...new Set(await scope.probe.holdersOf(locks.map((lock) => lock.actualKey)))];
      expect(ids.length).to.be.within(1, 8);
      expect(signals.some((signal) => signal.aborted)).to.equal(false);

      for (const id of ids) await scope.inspector.kill(id);
      const reasons = await Promise.all(signals.map((signal) => abortedWithin(signal, 1_000)));
      for (const reason of reasons) expect(reason).to.have.property('code', 'ERR_DLOCK_LOST');
      expect(lost).to.have.length(50);
      expect(locks.filter((lock) => lock.locked)).to.have.length(0);
      await Promise.all(locks.map((lock) => lock.close()));

      // The dead connections are gone; the next lock gets a new one.
      const next = createLock(knex, locks[0]!.key as string);
      expect(await next.acquire({ timeout: 2_000 })).to.equal(true);
      const [holder] = await scope.probe.holdersOf([next.actualKey]);
      expect(ids).to.not.include(holder);
      await next.release();
    });

    it('timeouts and aborts racing a grant on a shared connection leave nothing held', async function () {
      this.timeout(60_000);
      const knex = await knexFor();
      const session = await openSession(dialect);
      cleanups.push(() => session.close());
      const outcomes = { acquired: 0, timedOut: 0, aborted: 0 };
      const TIMEOUT = 120;
      const allSeen = () => outcomes.acquired > 0 && outcomes.timedOut > 0 && outcomes.aborted > 0;
      // Every rotation and jitter once, then more rounds until each outcome has happened.
      for (let round = 0; round < 16 || (!allSeen() && round < 64); round += 1) {
        const keys = [uniqueKey('race-a'), uniqueKey('race-b')];
        const holders = keys.map((key) => createLock(session.target, key));
        for (const holder of holders) expect(await holder.acquire()).to.equal(true);
        const actualKeys = holders.map((holder) => holder.actualKey);

        const controllers: AbortController[] = [];
        const started = performance.now();
        const waits: Promise<'acquired' | 'timedOut' | 'aborted'>[] = [];
        for (const key of keys) {
          // Rotate which kind of waiter comes first, and so waits in the database.
          const kinds = ['timed', 'aborted', 'forever'];
          for (let k = 0; k < 3; k += 1) {
            const kind = kinds[(k + round) % 3]!;
            const lock = createLock(knex, key);
            const controller = new AbortController();
            if (kind === 'aborted') controllers.push(controller);
            const options =
              kind === 'timed'
                ? { timeout: TIMEOUT }
                : kind === 'aborted'
                  ? { signal: controller.signal }
                  : {};
            waits.push(
              lock.acquire(options).then(
                async (acquired) => {
                  if (!acquired) {
                    expect(kind).to.equal('timed');
                    return 'timedOut';
                  }
                  await lock.release();
                  return 'acquired';
                },
                (err: unknown) => {
                  expect(err).to.equal(controller.signal.reason);
                  return 'aborted';
                },
              ),
            );
          }
        }
        // A try on a free key shares a connection with whatever runs meanwhile.
        const bystander = createLock(knex, uniqueKey('race-free'));
        expect(await bystander.acquire({ block: false })).to.equal(true);

        await until(
          'both heads waiting in the database',
          () => scope.probe.waitingFor(actualKeys),
          (n) => n === 2,
        );
        // Release the holders around the timed waiters' deadline, and abort around it too.
        const jitter = (round % 8) - 4;
        await sleep(Math.max(0, started + TIMEOUT + jitter - performance.now()));
        const abortFirst = round % 2 === 0;
        if (abortFirst) for (const c of controllers) c.abort(new Error('aborted by the test'));
        const releasing = Promise.all(holders.map((holder) => holder.release()));
        if (!abortFirst) {
          setImmediate(() => {
            for (const c of controllers) c.abort(new Error('aborted by the test'));
          });
        }
        await releasing;
        for (const outcome of await Promise.all(waits)) outcomes[outcome] += 1;
        await bystander.release();

        expect(lockConnectionStats(knex)).to.include({ holds: 0, queued: 0 });
        // A connection opened for a wait that gave up meanwhile is let go when it arrives.
        await until(
          'no wait left on the lock connections',
          () => lockConnectionStats(knex),
          (stats) => stats.waiting === 0 && stats.holds === 0 && stats.queued === 0,
          2_000,
        );
        expect(await scope.probe.holdersOf(actualKeys)).to.deep.equal([]);
      }
      expect(outcomes.acquired, JSON.stringify(outcomes)).to.be.greaterThan(0);
      expect(outcomes.timedOut, JSON.stringify(outcomes)).to.be.greaterThan(0);
      expect(outcomes.aborted, JSON.stringify(outcomes)).to.be.greaterThan(0);
    });
  });
}

for (const kind of TARGET_KINDS.filter((k) => k.pooled)) {
  describe(`lock connections of ${kind.name}`, () => {
    const scope = lockConnectionScope(kind.dialect);

    async function open(): Promise<object> {
      const opened = await kind.open();
      scope.cleanups.push(() => opened.close());
      return opened.target;
    }

    it('two lock objects on one key exclude each other even on a shared lock connection', async () => {
      const target = await open();
      const key = uniqueKey('exclusive');
      const first = createLock(target, key);
      const second = createLock(target, key);
      expect(await first.acquire()).to.equal(true);
      expect(await second.acquire({ block: false })).to.equal(false);
      expect(await second.acquire({ timeout: 50 })).to.equal(false);
      expect(await scope.inspector.holders(first.actualKey)).to.equal(1);
      await first.release();
      expect(await second.acquire({ block: false })).to.equal(true);
      expect(await first.acquire({ block: false })).to.equal(false);
      await second.release();
      expect(lockConnectionStats(target)).to.include({ holds: 0, queued: 0 });
    });

    for (const [how, options] of [
      ['tries', { block: false }],
      ['timed acquires', { timeout: 100 }],
    ] as const) {
      it(`concurrent ${how} of two lock objects on one free key: exactly one gets it`, async () => {
        const target = await open();
        // One warm lock connection, so that both attempts can run on it.
        const warm = createLock(target, uniqueKey('warm'));
        await warm.acquire();
        const winners: number[] = [];
        for (let round = 0; round < 5; round += 1) {
          const key = uniqueKey('twin');
          const twins = [createLock(target, key), createLock(target, key)];
          const results = await Promise.all(twins.map((lock) => lock.acquire(options)));
          winners.push(results.filter(Boolean).length);
          for (const lock of twins) await lock.close();
        }
        await warm.release();
        expect(winners).to.deep.equal([1, 1, 1, 1, 1]);
      });
    }

    if (kind.dialect === 'postgres') {
      it('shared locks on one key are all granted at once; an exclusive one is not', async () => {
        const target = await open();
        const key = uniqueKey('shared');
        const readers = [
          createLock(target, key, { shared: true }),
          createLock(target, key, { shared: true }),
        ];
        const writer = createLock(target, key);
        for (const reader of readers) expect(await reader.acquire({ block: false })).to.equal(true);
        expect(await writer.acquire({ block: false })).to.equal(false);
        for (const reader of readers) await reader.release();
        expect(await writer.acquire({ block: false })).to.equal(true);
        const reader = createLock(target, key, { shared: true });
        expect(await reader.acquire({ block: false })).to.equal(false);
        await writer.release();
      });
    }

    it('ending the target closes its lock connections: held locks are lost and freed', async () => {
      const opened = await kind.open();
      let closed = false;
      scope.cleanups.push(async () => closed || opened.close());
      const lock = createLock(opened.target, uniqueKey('end'));
      await lock.acquire();
      const signal = lock.signal!;
      closed = true;
      await opened.close();
      expect(await abortedWithin(signal, 1_000)).to.have.property('code', 'ERR_DLOCK_LOST');
      await until(
        'the key freed',
        () => scope.inspector.holders(lock.actualKey),
        (n) => n === 0,
      );
      expect(lock.locked).to.equal(false);
    });

    it('closeLockConnections() loses held locks and frees them; later locks open new ones', async () => {
      const target = await open();
      const key = uniqueKey('close');
      const lock = createLock(target, key);
      await lock.acquire();
      const signal = lock.signal!;
      await closeLockConnections(target);
      expect(lockConnectionStats(target).connections).to.equal(0);
      expect(await abortedWithin(signal, 1_000)).to.have.property('code', 'ERR_DLOCK_LOST');
      await until(
        'the key freed',
        () => scope.inspector.holders(lock.actualKey),
        (n) => n === 0,
      );
      const next = createLock(target, key);
      expect(await next.acquire({ block: false })).to.equal(true);
      expect(lockConnectionStats(target)).to.include({ connections: 1, holds: 1 });
      await next.release();
    });
  });
}
