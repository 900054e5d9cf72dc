/**
 * Question 8: what does `fencing: true` add to an uncontended acquire + release on a connection
 * the caller owns? Twice compared, each with the floor (two bare `SELECT 1` round trips): with
 * the same lock without fencing (the issue's target), and with a careful user's fenced cycle by
 * hand on the same token stores (named pg statements with `nextval` in the locking one; mysql2's
 * faster of `query` and `execute` for GET_LOCK, the counter's increment and RELEASE_LOCK).
 * PostgreSQL takes the token in the statement that grants the lock (no extra round trip); MySQL
 * / MariaDB needs one statement more, the counter's increment.
 */
import { compare } from './compare.js';
import { createLock, type BaseLock } from './library.js';
import { bareRoundTrips, floorStyles, rawFencedContenders } from './raw.js';
import { benchKey, type BenchContext, type Contender } from './runner.js';
import { PINNED_KINDS } from './targets.js';

const QUESTION = '8. fencing: true';
const PG_TARGET = 1.05;

const WAYS = {
  'acquire()': (lock: BaseLock) => lock.acquire(),
  'acquire({ block: false })': (lock: BaseLock) => lock.acquire({ block: false }),
} as const;

function loop(name: string, lock: BaseLock, take: (lock: BaseLock) => Promise<boolean>): Contender {
  return {
    name,
    async batch(n) {
      for (let i = 0; i < n; i += 1) {
        if (!(await take(lock))) throw new Error('the lock was busy');
        await lock.release();
      }
    },
  };
}

export async function fencing(ctx: BenchContext): Promise<void> {
  for (const kind of PINNED_KINDS) {
    const { target, pinned, close } = await kind.open(ctx);
    try {
      for (const [way, take] of Object.entries(WAYS)) {
        ctx.log(`${QUESTION}: ${kind.name}, ${way}`);
        const fenced = createLock(target, benchKey('fenced'), { fencing: true });
        const plain = createLock(target, benchKey('unfenced'));
        // The first grant creates the token store if it is missing; it is not part of a cycle.
        await take(fenced).then(() => fenced.release());
        await compare(ctx, {
          question: `${QUESTION}: ${kind.name}, ${way} + release`,
          rawLabel: 'fencing: false',
          library: [
            {
              ...loop('knex-dlock, fencing: true', fenced, take),
              vsRaw: kind.database === 'pg' ? PG_TARGET : undefined,
            },
          ],
          raw: [loop('knex-dlock, fencing: false', plain, take)],
          floor: floorStyles(pinned).map((style) => bareRoundTrips(pinned, style)),
          diagnostics: [],
        });
        const attempt = way === 'acquire()' ? 'wait' : 'try';
        await compare(ctx, {
          question: `${QUESTION}: ${kind.name}, ${way} + release, against fencing by hand`,
          library: [loop('knex-dlock, fencing: true', fenced, take)],
          raw: rawFencedContenders(
            pinned,
            createLock(target, benchKey('fenced-raw')).actualKey,
            attempt,
          ),
          floor: floorStyles(pinned).map((style) => bareRoundTrips(pinned, style)),
          diagnostics: [],
        });
      }
    } finally {
      await close();
    }
  }
}
