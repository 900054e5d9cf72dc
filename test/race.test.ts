/**
 * Aborts and timeouts that land just as the holder releases: whichever way the race goes, the
 * waiter either holds the lock and says so, or does not hold it. Rounds move the release around
 * the moment the wait ends and repeat until both ways have been seen, so that the test proves
 * it covered both.
 */
import { expect } from 'chai';
import { createLock } from '../src/index.js';
import { sleep } from './support/expect.js';
import { watchLockWaits, type LockWaitWatcher } from './support/server-state.js';
import {
  openInspector,
  TARGET_KINDS,
  uniqueKey,
  type LockInspector,
  type OpenTarget,
} from './support/targets.js';

type Ending = 'abort' | 'timeout';
type Outcome = 'held' | 'notHeld';

/** The timed waiter's timeout: long enough for its wait to be seen on the server first. */
const WAIT_MS = 150;
/**
 * Where each round releases the holder. Timeout: milliseconds from the waiter's deadline.
 * Abort: milliseconds between the release and the abort (negative: the abort comes first; 0: in
 * the same tick). The outer values settle each way for sure; the inner ones race.
 */
const OFFSETS: Record<Ending, readonly number[]> = {
  timeout: [-30, 30, -4, 4, -2, 2, -1, 0, 1],
  abort: [-5, 10, 0, 1, 2, 3, 5],
};
/** Rounds stop once both outcomes were seen and every offset was tried, or at this bound. */
const MAX_ROUNDS = 40;

for (const kind of TARGET_KINDS.filter((k) =>
  [
    'pg.Client',
    'pg.Pool',
    'pg.native.Client',
    'mysql2 connection',
    'knex (mysql2)',
    'knex (mysql)',
  ].includes(k.name),
)) {
  describe(`grant racing an abort or a timeout on ${kind.name}`, function () {
    this.timeout(60_000);
    let inspector: LockInspector;
    let waits: LockWaitWatcher;
    let holderTarget: OpenTarget;
    let waiterTarget: OpenTarget;

    before(async () => {
      inspector = await openInspector(kind.dialect);
      waits = await watchLockWaits(kind.dialect);
      holderTarget = await kind.open();
      waiterTarget = await kind.open();
    });

    after(async () => {
      await holderTarget?.close();
      await waiterTarget?.close();
      await waits?.close();
      await inspector?.close();
    });

    /** One race; resolves how it ended, once checked against the server. */
    async function race(ending: Ending, offset: number): Promise<Outcome> {
      const key = uniqueKey('race');
      const holder = createLock(holderTarget.target, key);
      const waiter = createLock(waiterTarget.target, key);
      expect(await holder.acquire({ block: false })).to.equal(true);
      const controller = new AbortController();
      const reason = Object.assign(new Error('aborted by the race test'), { code: 'TEST_ABORT' });
      const started = performance.now();
      const waiting = waiter
        .acquire(ending === 'abort' ? { signal: controller.signal } : { timeout: WAIT_MS })
        .catch((err: unknown) => {
          // The test's own abort is the only error a waiter may end with.
          if (ending === 'abort' && err === reason) return false;
          throw err;
        });
      await waits.waitFor(waiter.actualKey);

      // The sleeps below place the release and the abort in time: the timing is what races.
      if (ending === 'timeout') {
        await sleep(Math.max(0, started + WAIT_MS + offset - performance.now()));
        await holder.release();
      } else if (offset < 0) {
        controller.abort(reason);
        await sleep(-offset);
        await holder.release();
      } else {
        const releasing = holder.release();
        if (offset > 0) await sleep(offset);
        controller.abort(reason);
        await releasing;
      }

      const acquired = await waiting;
      expect(waiter.locked, 'locked says what acquire() said').to.equal(acquired);
      expect(await inspector.holders(waiter.actualKey), 'holders on the server').to.equal(
        acquired ? 1 : 0,
      );
      await waiter.close();
      expect(await inspector.holders(waiter.actualKey), 'holders after close()').to.equal(0);
      return acquired ? 'held' : 'notHeld';
    }

    for (const ending of ['abort', 'timeout'] as const) {
      it(`a waiter whose ${ending} races the release holds the lock exactly when it says so, both ways`, async () => {
        const offsets = OFFSETS[ending];
        const seen: Record<Outcome, number> = { held: 0, notHeld: 0 };
        const rounds: string[] = [];
        for (
          let round = 0;
          round < MAX_ROUNDS && (round < offsets.length || !seen.held || !seen.notHeld);
          round += 1
        ) {
          const offset = offsets[round % offsets.length]!;
          const outcome = await race(ending, offset);
          seen[outcome] += 1;
          rounds.push(`${offset}: ${outcome}`);
        }
        const summary = `after ${rounds.length} rounds (offset: outcome) ${rounds.join(', ')}`;
        expect(seen.held, `a round where the waiter won, ${summary}`).to.be.greaterThan(0);
        expect(seen.notHeld, `a round where the ${ending} won, ${summary}`).to.be.greaterThan(0);
      });
    }
  });
}
