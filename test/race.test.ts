/**
 * Aborts and timeouts that land just as the holder releases: whichever way the race goes, the
 * waiter either holds the lock and says so, or does not hold it.
 */
import { expect } from 'chai';
import { createLock } from '../src/index.js';
import { sleep } from './support/expect.js';
import { openInspector, TARGET_KINDS, uniqueKey } from './support/targets.js';

const ROUNDS = 12;

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
    this.timeout(30_000);

    for (const ending of ['abort', 'timeout'] as const) {
      it(`a waiter whose ${ending} races the release holds the lock exactly when it says so`, async () => {
        const inspector = await openInspector(kind.dialect);
        const holderTarget = await kind.open();
        const waiterTarget = await kind.open();
        const outcomes = { held: 0, notHeld: 0 };
        try {
          for (let round = 0; round < ROUNDS; round += 1) {
            const key = uniqueKey('race');
            const holder = createLock(holderTarget.target, key);
            const waiter = createLock(waiterTarget.target, key);
            await holder.acquire();
            const controller = new AbortController();
            const waitMs = 60;
            const waiting = waiter
              .acquire(ending === 'abort' ? { signal: controller.signal } : { timeout: waitMs })
              .catch(() => false);
            // Release close to the moment the wait ends, a little before or after.
            await sleep(waitMs - 4 + (round % 8));
            const releasing = holder.release();
            if (ending === 'abort') controller.abort(new Error('race'));
            await releasing;
            const acquired = await waiting;
            expect(waiter.locked).to.equal(acquired);
            expect(await inspector.holders(waiter.actualKey)).to.equal(acquired ? 1 : 0);
            outcomes[acquired ? 'held' : 'notHeld'] += 1;
            await waiter.close();
            expect(await inspector.holders(waiter.actualKey)).to.equal(0);
          }
        } finally {
          await holderTarget.close();
          await waiterTarget.close();
          await inspector.close();
        }
        expect(outcomes.held + outcomes.notHeld).to.equal(ROUNDS);
      });
    }
  });
}
