/**
 * Random sequences of lock operations against the real databases, on the library's own lock
 * connections (the default) and on connections borrowed from the application's pool; after
 * each sequence no connection may be checked out of the pool, no lock connection may hold,
 * wait or queue anything, and no key may still be locked. An operation may fail only in the
 * ways the contract allows for it (by error code); any other error fails the test.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { Knex } from 'knex';
import type pg from 'pg';
import {
  createLock,
  lockConnectionStats,
  type BaseLock,
  type ConnectionMode,
  type DlockErrorCode,
} from '../src/index.js';
import { abortedWithin, sleep } from './support/expect.js';
import { until } from './support/server-state.js';
import { openInspector, TARGET_KINDS, uniqueKey, type LockInspector } from './support/targets.js';

type Operation =
  | { op: 'try'; lock: number }
  | { op: 'timed'; lock: number; ms: number }
  | { op: 'abort'; lock: number; afterMs: number }
  | { op: 'release'; lock: number }
  | { op: 'close'; lock: number }
  | { op: 'closeWhileWaiting'; lock: number; afterMs: number }
  | { op: 'kill'; lock: number };

const LOCKS = 3;
/** Sequences per target and connection mode. */
const RUNS = 12;
const lockIndex = fc.integer({ min: 0, max: LOCKS - 1 });
const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ op: fc.constant('try' as const), lock: lockIndex }),
  fc.record({
    op: fc.constant('timed' as const),
    lock: lockIndex,
    ms: fc.integer({ min: 1, max: 60 }),
  }),
  fc.record({
    op: fc.constant('abort' as const),
    lock: lockIndex,
    afterMs: fc.integer({ min: 0, max: 40 }),
  }),
  fc.record({ op: fc.constant('release' as const), lock: lockIndex }),
  fc.record({ op: fc.constant('close' as const), lock: lockIndex }),
  fc.record({
    op: fc.constant('closeWhileWaiting' as const),
    lock: lockIndex,
    afterMs: fc.integer({ min: 0, max: 40 }),
  }),
  fc.record({ op: fc.constant('kill' as const), lock: lockIndex }),
);

/** Connections lent out and not given back, read from each pool's own counters. */
function checkedOut(target: object): number {
  const knexPool = (target as Partial<Knex>).client?.pool as
    { numUsed(): number; numPendingCreates(): number } | undefined;
  if (knexPool) return knexPool.numUsed() + knexPool.numPendingCreates();
  const pgPool = target as Partial<pg.Pool>;
  if (typeof pgPool.totalCount === 'number') return pgPool.totalCount - (pgPool.idleCount ?? 0);
  const mysqlPool = ((target as { pool?: object }).pool ?? target) as {
    _allConnections: { length: number };
    _freeConnections: { length: number };
  };
  return mysqlPool._allConnections.length - mysqlPool._freeConnections.length;
}

/** A rejection handler that lets through only errors with one of `codes`, and rethrows others. */
function tolerate(...codes: DlockErrorCode[]): (err: unknown) => undefined {
  return (err) => {
    const code = (err as { code?: unknown } | null)?.code;
    if (codes.some((expected) => expected === code)) return undefined;
    throw err;
  };
}

async function apply(step: Operation, locks: BaseLock[], inspector: LockInspector): Promise<void> {
  const lock = locks[step.lock]!;
  // Operations run one after another, so a lock is idle, held or lost when each starts.
  switch (step.op) {
    case 'try':
      await lock.acquire({ block: false }).catch(tolerate('ERR_DLOCK_ALREADY_HELD'));
      return;
    case 'timed':
      await lock.acquire({ timeout: step.ms }).catch(tolerate('ERR_DLOCK_ALREADY_HELD'));
      return;
    case 'abort': {
      const controller = new AbortController();
      const reason = new Error('aborted by the hygiene test');
      const acquiring = lock
        .acquire({ signal: controller.signal, timeout: 200 })
        .catch((err: unknown) =>
          err === reason ? undefined : tolerate('ERR_DLOCK_ALREADY_HELD')(err),
        );
      // The delay is the generated input: it lands the abort at varied points of the acquire.
      await sleep(step.afterMs);
      controller.abort(reason);
      await acquiring;
      return;
    }
    case 'release':
      await lock.release().catch(tolerate('ERR_DLOCK_NOT_HELD', 'ERR_DLOCK_LOST'));
      return;
    case 'close':
      await lock.close();
      return;
    case 'closeWhileWaiting': {
      // A close that lands on a wait cancels it with ERR_DLOCK_NOT_HELD.
      const acquiring = lock
        .acquire({ timeout: 200 })
        .catch(tolerate('ERR_DLOCK_NOT_HELD', 'ERR_DLOCK_ALREADY_HELD'));
      // The delay is the generated input, as for 'abort'.
      await sleep(step.afterMs);
      await lock.close();
      await acquiring;
      return;
    }
    case 'kill': {
      if (!lock.locked) return;
      const ids = await inspector.holderIds(lock.actualKey);
      expect(ids, 'sessions holding a locked key').to.have.length.greaterThan(0);
      const signal = lock.signal!;
      for (const id of ids) await inspector.kill(id);
      // The contract: a held lock whose connection dies aborts its signal.
      await abortedWithin(signal, 5_000);
      return;
    }
  }
}

const MODES: readonly { mode: ConnectionMode | undefined; name: string }[] = [
  { mode: undefined, name: 'lock connections (default)' },
  { mode: 'pool', name: "connection: 'pool'" },
];

for (const kind of TARGET_KINDS.filter((k) => k.pooled)) {
  for (const { mode, name } of MODES) {
    describe(`pool hygiene under random operations on ${kind.name}, ${name}`, () => {
      let inspector: LockInspector;
      before(async () => {
        inspector = await openInspector(kind.dialect);
      });
      after(() => inspector.close());

      it('leaves no connection checked out and no lock held after any sequence', async function () {
        this.timeout(60_000);
        const opened = await kind.open();
        const options = mode === undefined ? {} : { connection: mode };
        try {
          await fc.assert(
            fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 8 }), async (steps) => {
              const key = uniqueKey('property');
              const locks = Array.from({ length: LOCKS }, () =>
                createLock(opened.target, key, options),
              );
              for (const step of steps) await apply(step, locks, inspector);
              await Promise.all(locks.map((lock) => lock.close()));
              // A destroyed connection is given back to its pool asynchronously.
              await until(
                'connections checked out',
                () => checkedOut(opened.target),
                (n) => n === 0,
              );
              if (mode === undefined) {
                await until(
                  'lock connections holding, waiting or queueing',
                  () => lockConnectionStats(opened.target),
                  (stats) => stats.holds === 0 && stats.waiting === 0 && stats.queued === 0,
                );
              }
              expect(await inspector.leftovers(), 'keys still locked').to.deep.equal([]);
            }),
            { numRuns: RUNS, endOnFailure: true },
          );
        } finally {
          const started = performance.now();
          await opened.close();
          expect(performance.now() - started, 'the pool took too long to close').to.be.below(2_000);
        }
        if (mode === undefined) {
          expect(
            lockConnectionStats(opened.target).connections,
            'lock connections left open',
          ).to.equal(0);
        }
      });
    });
  }
}
