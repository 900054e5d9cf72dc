/**
 * The `node:diagnostics_channel` channels: `knex-dlock:acquire` and `knex-dlock:release`
 * (tracing channels) and `knex-dlock:lost`, with the payloads documented in
 * docs/inspection-and-observability.md.
 */
import { expect } from 'chai';
import diagnostics from 'node:diagnostics_channel';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import {
  createLock,
  type AcquireChannelContext,
  type LostChannelMessage,
  type ReleaseChannelContext,
} from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { uniqueKey } from './support/targets.js';

type Event = { readonly name: string; readonly context: Record<string, unknown> };

/** Subscribes to every event of the tracing channel `name` while `fn` runs. */
async function recordTracing(name: string, fn: () => Promise<void>): Promise<Event[]> {
  const events: Event[] = [];
  const channel = diagnostics.tracingChannel(name);
  const record = (event: string) => (context: unknown) =>
    void events.push({ name: event, context: { ...(context as Record<string, unknown>) } });
  const handlers = {
    start: record('start'),
    end: record('end'),
    asyncStart: record('asyncStart'),
    asyncEnd: record('asyncEnd'),
    error: record('error'),
  };
  channel.subscribe(handlers);
  try {
    await fn();
  } finally {
    channel.unsubscribe(handlers);
  }
  return events;
}

for (const dialect of ['postgres', 'mysql'] as const) {
  describe(`diagnostics channels (${dialect})`, () => {
    let knex: Knex;
    before(async () => {
      const urls = await databaseUrls();
      knex = knexFactory({
        client: dialect === 'postgres' ? 'pg' : 'mysql2',
        connection: dialect === 'postgres' ? urls.pg : urls.mysql,
        pool: { min: 0, max: 2 },
      });
    });
    after(() => knex.destroy());

    it('knex-dlock:acquire traces a grant and a try that finds the key held', async () => {
      const key = uniqueKey();
      const holder = createLock(knex, key);
      const other = createLock(knex, key, { connection: 'dedicated' });
      const events = await recordTracing('knex-dlock:acquire', async () => {
        expect(await holder.acquire({ timeout: 1_000 })).to.equal(true);
        expect(await other.acquire({ block: false })).to.equal(false);
      });
      await holder.release();
      await other.close();
      expect(events.map((e) => e.name)).to.deep.equal([
        'start',
        'end',
        'asyncStart',
        'asyncEnd',
        'start',
        'end',
        'asyncStart',
        'asyncEnd',
      ]);
      const granted = events[3]!.context as unknown as AcquireChannelContext;
      expect(granted).to.include({
        key,
        actualKey: holder.actualKey,
        dialect,
        connection: 'multiplexed',
        shared: false,
        xact: false,
        fencing: false,
        wait: 'timed',
        timeout: 1_000,
        outcome: 'acquired',
        result: true,
      });
      expect(granted.waitMs).to.be.a('number').and.at.least(0);
      const busy = events[7]!.context as unknown as AcquireChannelContext;
      expect(busy).to.include({
        connection: 'dedicated',
        wait: 'try',
        outcome: 'not-acquired',
        result: false,
      });
    });

    it('knex-dlock:acquire reports an acquire that rejects on its error event', async () => {
      const lock = createLock(knex, uniqueKey());
      const holder = createLock(knex, String(lock.key), { connection: 'dedicated' });
      await holder.acquire();
      const events = await recordTracing('knex-dlock:acquire', async () => {
        const waiting = lock.acquire();
        setImmediate(() => void lock.close());
        await waiting.catch(() => undefined);
      });
      await holder.release();
      const error = events.find((e) => e.name === 'error');
      expect(error, JSON.stringify(events.map((e) => e.name))).to.not.equal(undefined);
      expect(error!.context).to.include({ outcome: 'error' });
      expect((error!.context.error as { code?: string }).code).to.equal('ERR_DLOCK_NOT_HELD');
    });

    it('knex-dlock:release traces each release with how long the lock was held', async () => {
      const lock = createLock(knex, uniqueKey(), { connection: 'pool' });
      expect(await lock.acquire()).to.equal(true);
      const events = await recordTracing('knex-dlock:release', () => lock.release());
      expect(events.map((e) => e.name)).to.deep.equal(['start', 'end', 'asyncStart', 'asyncEnd']);
      const done = events[3]!.context as unknown as ReleaseChannelContext;
      expect(done).to.include({ connection: 'pool', dialect, outcome: 'released' });
      expect(done.heldMs).to.be.a('number').and.at.least(0);
    });

    it('knex-dlock:lost tells of a lock whose connection was killed', async () => {
      const lock = createLock(knex, uniqueKey(), { connection: 'dedicated' });
      expect(await lock.acquire()).to.equal(true);
      const messages: LostChannelMessage[] = [];
      const onMessage = (message: unknown) => void messages.push(message as LostChannelMessage);
      diagnostics.subscribe('knex-dlock:lost', onMessage);
      try {
        const signal = lock.signal!;
        await killHolder(knex, dialect, lock.actualKey);
        if (!signal.aborted) await new Promise((r) => signal.addEventListener('abort', r));
      } finally {
        diagnostics.unsubscribe('knex-dlock:lost', onMessage);
      }
      expect(messages).to.have.length(1);
      expect(messages[0]).to.include({ key: String(lock.key), dialect, connection: 'dedicated' });
      expect(messages[0]!.error).to.have.property('code', 'ERR_DLOCK_LOST');
      await lock.close();
    });
  });
}

/** Ends the session that holds `actualKey`, from another connection. */
async function killHolder(knex: Knex, dialect: string, actualKey: bigint | string): Promise<void> {
  if (dialect === 'postgres') {
    const key = BigInt.asUintN(64, actualKey as bigint);
    const client = new pg.Client((await databaseUrls()).pg);
    await client.connect();
    try {
      await client.query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND " +
          'classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1 AND granted',
        [String(key >> 32n), String(key & 0xffffffffn)],
      );
    } finally {
      await client.end();
    }
    return;
  }
  const [rows] = (await knex.raw('SELECT IS_USED_LOCK(?) AS id', [String(actualKey)])) as [
    { id: number }[],
  ];
  await knex.raw(`KILL ${Number(rows[0]!.id)}`);
}
