/**
 * Question 4: 200 concurrent waiters on one key through one knex instance. How fast do they
 * get through, how many connections and queries does it take, and does every waiter get the
 * lock (one at a time)?
 */
import knexFactory from 'knex';
import { createLock } from './library.js';
import { countTraffic } from '../test/support/counting.js';
import { benchKey, type BenchContext } from './runner.js';

const QUESTION = '4. 200 waiters, one key, one knex';
const WAITERS = 200;
const POOL_MAX = 10;

export async function manyWaiters(ctx: BenchContext): Promise<void> {
  for (const client of ['pg', 'mysql2'] as const) {
    ctx.log(`${QUESTION}: knex (${client})`);
    const knex = knexFactory({
      client,
      connection: client === 'pg' ? ctx.pgUrl : ctx.mysqlUrl,
      pool: { min: 0, max: POOL_MAX },
    });
    const counter = countTraffic(knex);
    try {
      const key = benchKey('many');
      let holding = 0;
      let mostAtOnce = 0;
      let held = 0;
      const started = performance.now();
      const { counts } = await counter.measure(
        () =>
          Promise.all(
            Array.from({ length: WAITERS }, async () => {
              const lock = createLock(knex, key);
              if (!(await lock.acquire())) return;
              holding += 1;
              mostAtOnce = Math.max(mostAtOnce, holding);
              held += 1;
              // Yield once while holding, so that an overlapping holder would be seen.
              await new Promise((resolve) => setImmediate(resolve));
              holding -= 1;
              await lock.release();
            }),
          ),
        0,
      );
      const seconds = (performance.now() - started) / 1000;
      const name = `knex-dlock on knex (${client}, pool max ${POOL_MAX})`;
      const extra = {
        waiters: WAITERS,
        held,
        everyWaiterHeld: held === WAITERS,
        mostHoldersAtOnce: mostAtOnce,
        connectionsOpened: counts.connectionsOpened,
        roundTrips: counts.roundTrips,
        statements: counts.statements,
      };
      ctx.rows.push(
        {
          question: QUESTION,
          contender: name,
          metric: 'acquisitions',
          unit: '/s',
          median: WAITERS / seconds,
          extra,
        },
        {
          question: QUESTION,
          contender: name,
          metric: 'connections opened',
          unit: '',
          median: counts.connectionsOpened,
        },
        {
          question: QUESTION,
          contender: name,
          metric: 'round trips',
          unit: '',
          median: counts.roundTrips,
        },
        {
          question: QUESTION,
          contender: name,
          metric: 'waiters that held it',
          unit: '',
          median: held,
        },
        {
          question: QUESTION,
          contender: name,
          metric: 'most holders at once',
          unit: '',
          median: mostAtOnce,
        },
      );
    } finally {
      counter.detach();
      await knex.destroy();
    }
  }
}
