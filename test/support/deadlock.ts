import { expect } from 'chai';
import { createLock, type BaseLock } from '../../src/index.js';
import { uniqueKey } from './targets.js';

/**
 * Makes two sessions wait for each other's lock and checks that exactly one wait fails with
 * ERR_DLOCK_DEADLOCK and that the other gets its lock once the victim lets go. Resolves every
 * lock it made, for the caller to close.
 */
export async function expectDeadlockRecovery(first: object, second: object): Promise<BaseLock[]> {
  const [k1, k2] = [uniqueKey('a'), uniqueKey('b')];
  const a1 = createLock(first, k1);
  const b2 = createLock(second, k2);
  await a1.acquire();
  await b2.acquire();
  const a2 = createLock(first, k2);
  const b1 = createLock(second, k1);
  const waits = [a2.acquire(), b1.acquire()];
  const victim = await Promise.race(
    waits.map((wait, index) =>
      wait.then(
        () => -1,
        (err: unknown) => ({ index, err }),
      ),
    ),
  );
  expect(victim).to.not.equal(-1);
  const { index, err } = victim as { index: number; err: unknown };
  expect(err).to.have.property('code', 'ERR_DLOCK_DEADLOCK');
  // The victim still holds its first lock; releasing it lets the survivor through.
  await (index === 0 ? a1 : b2).release();
  expect(await waits[1 - index]).to.equal(true);
  return [a1, b2, a2, b1];
}
