/**
 * Question 1: how much does an uncontended acquire + release cost over the raw driver sending
 * the very same SQL on the same pinned connection? The SQL is recorded from the library's own
 * traffic, so the raw contender stays the limit whatever the library sends.
 */
import knexFactory, { type Knex } from 'knex';
import { createLock, type BaseLock, type LockOptions } from './library.js';
import { countTraffic, type QueryCall } from '../test/support/counting.js';
import {
  benchKey,
  interleave,
  mysqlConnection,
  perOpRows,
  pgClient,
  rawQuery,
  type BenchContext,
  type Contender,
} from './runner.js';

const QUESTION = '1. uncontended acquire+release';
const TARGET_RATIO = 1.1;

interface Setup {
  readonly name: string;
  /** Whether each lock checks a connection out of a pool, which the pinned raw contender skips. */
  readonly checksOut?: boolean;
  /** The lock's options: on a pool, where its connection comes from. */
  readonly lockOptions?: LockOptions;
  /** The lock's target, and a function that lends its (single) connection to the raw contender. */
  open(ctx: BenchContext): Promise<{
    target: object;
    /** What the traffic counter watches, when not the target itself (a transaction's connection). */
    countOn?: object;
    withConnection<T>(fn: (connection: object) => Promise<T>): Promise<T>;
    close(): Promise<void>;
  }>;
}

/**
 * On a knex instance, with `connection: 'pool'`: the lock borrows the pooled connection the raw
 * contender uses. (The default, multiplexed, runs on lock connections of the library's own; see
 * connections.ts.)
 */
function knexSetup(client: 'pg' | 'mysql2'): Setup {
  return {
    name: `knex (${client}, connection: 'pool')`,
    checksOut: true,
    lockOptions: { connection: 'pool' },
    async open(ctx) {
      // One pooled connection: the library and the raw contender run on the same one.
      const knex: Knex = knexFactory({
        client,
        connection: client === 'pg' ? ctx.pgUrl : ctx.mysqlUrl,
        pool: { min: 1, max: 1 },
      });
      await knex.raw('SELECT 1');
      return {
        target: knex,
        async withConnection(fn) {
          const connection = (await knex.client.acquireConnection()) as object;
          try {
            return await fn(connection);
          } finally {
            await knex.client.releaseConnection(connection);
          }
        },
        close: () => knex.destroy(),
      };
    },
  };
}

/**
 * A knex transaction pins one connection, as the raw contender does: this measures the
 * library's own cost on knex. On a knex instance (above) every lock also checks a connection
 * out of knex's pool and back, which the pinned raw contender skips.
 */
function knexTransactionSetup(client: 'pg' | 'mysql2'): Setup {
  return {
    name: `knex transaction (${client})`,
    async open(ctx) {
      const knex: Knex = knexFactory({
        client,
        connection: client === 'pg' ? ctx.pgUrl : ctx.mysqlUrl,
        pool: { min: 1, max: 1 },
      });
      const trx = await knex.transaction();
      const connection = (await trx.client.acquireConnection()) as object;
      return {
        target: trx,
        countOn: connection,
        withConnection: (fn) => fn(connection),
        async close() {
          await trx.commit();
          await knex.destroy();
        },
      };
    },
  };
}

const SETUPS: readonly Setup[] = [
  {
    name: 'pg.Client',
    async open(ctx) {
      const client = await pgClient(ctx.pgUrl);
      return { target: client, withConnection: (fn) => fn(client), close: () => client.end() };
    },
  },
  knexSetup('pg'),
  knexTransactionSetup('pg'),
  {
    name: 'mysql2 connection',
    async open(ctx) {
      const conn = await mysqlConnection(ctx.mysqlUrl);
      return {
        target: conn,
        withConnection: (fn) => fn(conn),
        close: () => conn.promise().end(),
      };
    },
  },
  knexSetup('mysql2'),
  knexTransactionSetup('mysql2'),
];

async function cycle(lock: BaseLock): Promise<void> {
  await lock.acquire();
  await lock.release();
}

/** The statements one acquire + release sends, as the driver received them. */
async function recordCycle(counted: object, lock: BaseLock): Promise<QueryCall[]> {
  const counter = countTraffic(counted);
  try {
    const { calls, counts } = await counter.measure(() => cycle(lock), 0);
    if (counts.roundTrips !== 2 || calls.length !== 2) {
      throw new Error(`expected 2 statements per cycle, recorded ${calls.length}`);
    }
    return calls;
  } finally {
    counter.detach();
  }
}

export async function uncontended(ctx: BenchContext): Promise<void> {
  const rounds = ctx.quick ? 7 : 25;
  const perBatch = ctx.quick ? 100 : 300;
  for (const setup of SETUPS) {
    ctx.log(`${QUESTION}: ${setup.name}`);
    const opened = await setup.open(ctx);
    try {
      const lock = createLock(opened.target, benchKey('uncontended'), setup.lockOptions);
      // The first cycle connects and warms up; the recorded one is a steady-state cycle.
      await cycle(lock);
      const calls = await recordCycle(opened.countOn ?? opened.target, lock);
      const library: Contender = {
        name: `knex-dlock on ${setup.name}`,
        async batch(n) {
          for (let i = 0; i < n; i += 1) await cycle(lock);
        },
      };
      const raw: Contender = {
        name: `raw driver on ${setup.name}`,
        batch: (n) =>
          opened.withConnection(async (connection) => {
            for (let i = 0; i < n; i += 1) {
              for (const call of calls) await rawQuery(connection, call.sql, call.params);
            }
          }),
      };
      const timings = await interleave([library, raw], { rounds, perBatch });
      ctx.rows.push(
        ...perOpRows(QUESTION, timings, raw.name, setup.checksOut ? undefined : TARGET_RATIO),
      );
    } finally {
      await opened.close();
    }
  }
}
