/**
 * Visible lock activity: the `knex-dlock` debug namespaces, and knex's own query events and
 * `knex:query` debug output for the statements the library sends through a knex target.
 */
import { format } from 'node:util';
import { expect } from 'chai';
import createDebug from 'debug';
import type { Knex } from 'knex';
import pg from 'pg';
import { createLock, type ConnectionMode } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { openKnex } from './support/lock-connections.js';
import { terminateSession } from './support/sessions.js';
import { uniqueKey, type DialectName } from './support/targets.js';

/** Enables `namespaces` for the duration of `fn` and returns what the debug package printed. */
async function captureDebug(namespaces: string, fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const previousLog = createDebug.log;
  const previous = createDebug.disable();
  createDebug.log = (...args: unknown[]) => void lines.push(format(...args));
  createDebug.enable(namespaces);
  try {
    await fn();
  } finally {
    createDebug.disable();
    if (previous) createDebug.enable(previous);
    createDebug.log = previousLog;
  }
  return lines;
}

/** pg's backend pid of a connected client (not in pg's type declarations). */
const pidOf = (client: pg.Client) => (client as unknown as { processID: number }).processID;

describe('DEBUG=knex-dlock', () => {
  let client: pg.Client;
  let other: pg.Client;

  beforeEach(async () => {
    const url = (await databaseUrls()).pg;
    client = new pg.Client({ connectionString: url });
    other = new pg.Client({ connectionString: url });
    for (const c of [client, other]) c.on('error', () => undefined);
    await Promise.all([client.connect(), other.connect()]);
  });

  afterEach(async () => {
    await Promise.all([client.end(), other.end()].map((p) => p.catch(() => undefined)));
  });

  it('traces acquire, server wait, grant, timeout, release and loss with key, connection and timings', async () => {
    const key = uniqueKey('traced');
    const lines = await captureDebug('knex-dlock', async () => {
      const lock = createLock(client, key);
      expect(await lock.acquire({ timeout: 1_000 })).to.equal(true);
      expect(await createLock(other, key).acquire({ timeout: 50 })).to.equal(false);
      expect(await createLock(other, key).acquire({ block: false })).to.equal(false);
      await lock.release();
      expect(await lock.acquire()).to.equal(true);
      const lost = lock.signal!;
      await terminateSession('postgres', pidOf(client));
      if (!lost.aborted) await new Promise((resolve) => lost.addEventListener('abort', resolve));
    });
    const text = lines.join('\n');
    const pid = String(pidOf(client));
    const expected = [
      `acquire ${key}: wait up to 1000 ms`,
      `server wait for ${key} on connection ${pid} (wait up to`,
      `granted ${key} on connection ${pid} after`,
      `server wait for ${key} on connection ${pidOf(other)} (wait up to 50 ms)`,
      `timed out ${key} after`,
      `busy ${key} after`,
      `released ${key} on connection ${pid} after holding it`,
      `acquire ${key}: wait forever`,
      `lost ${key} on connection ${pid}:`,
    ];
    for (const line of expected) expect(text).to.include(line);
    expect(text).to.match(/granted .* after \d+\.\d ms/);
    // Every line carries the namespace, so that it can be told from others in a shared log.
    for (const line of lines) expect(line).to.include('knex-dlock');
  });

  it('traces the lock connections a pool target opens and closes under knex-dlock:connections', async () => {
    const knex = await openKnex('postgres');
    try {
      const lines = await captureDebug('knex-dlock:connections', async () => {
        const lock = createLock(knex, uniqueKey());
        expect(await lock.acquire({ block: false })).to.equal(true);
        await lock.release();
        await knex.destroy();
      });
      expect(lines.join('\n')).to.match(
        /lock connection opened \d+[\s\S]*lock connection closed \d+/,
      );
    } finally {
      await knex.destroy();
    }
  });

  it('prints nothing when no knex-dlock namespace is enabled', async () => {
    const lines = await captureDebug('some-other-library', async () => {
      const lock = createLock(client, uniqueKey());
      expect(await lock.acquire()).to.equal(true);
      await lock.release();
    });
    expect(lines).to.deep.equal([]);
  });
});

interface QueryEvent {
  readonly sql: string;
  readonly bindings: readonly unknown[];
  readonly source?: string;
  readonly __knexQueryUid: string;
  readonly __knexTxId?: string;
}

/** Collects the knex events of `knex` while `fn` runs. */
async function knexEvents(knex: Knex, fn: () => Promise<void>) {
  const queries: QueryEvent[] = [];
  const responses: QueryEvent[] = [];
  const errors: { error: unknown; query: QueryEvent }[] = [];
  const onQuery = (query: QueryEvent) => queries.push(query);
  const onResponse = (_response: unknown, query: QueryEvent) => responses.push(query);
  const onError = (error: unknown, query: QueryEvent) => errors.push({ error, query });
  knex.on('query', onQuery).on('query-response', onResponse).on('query-error', onError);
  try {
    await fn();
  } finally {
    knex.off('query', onQuery).off('query-response', onResponse).off('query-error', onError);
  }
  const ours = (list: QueryEvent[]) => list.filter((query) => query.source === 'knex-dlock');
  return { queries: ours(queries), responses: ours(responses), errors };
}

const DIALECTS: readonly DialectName[] = ['postgres', 'mysql'];
/** The statement that sets a lock connection's bound on silent faults. */
const SERVER_BOUND = /tcp_user_timeout|wait_timeout/;
/** What the first lock on a connection asks of its server, once (a standby? read-only?). */
const SERVER_FACTS = /pg_is_in_recovery|@@global\.read_only/;
const MODES: readonly ConnectionMode[] = ['multiplexed', 'pool', 'dedicated'];

for (const dialect of DIALECTS) {
  describe(`knex query events for lock statements (${dialect})`, () => {
    let knex: Knex;
    before(async () => {
      knex = await openKnex(dialect);
    });
    after(() => knex.destroy());

    for (const connection of MODES) {
      it(`a knex instance reports each lock statement with its response (connection: '${connection}')`, async () => {
        const { queries: all, responses } = await knexEvents(knex, async () => {
          const lock = createLock(knex, uniqueKey(), { connection });
          expect(await lock.acquire({ block: false })).to.equal(true);
          await lock.release();
        });
        // A connection of the library's own first gets its bound on silent faults, once, and
        // every connection is asked what its server is, once.
        const bounds = all.filter((query) => SERVER_BOUND.test(query.sql));
        if (connection === 'pool') {
          expect(bounds, 'the application pool is left alone').to.have.length(0);
        }
        if (connection === 'dedicated') expect(bounds).to.have.length(1);
        const queries = all.filter(
          (query) => !SERVER_BOUND.test(query.sql) && !SERVER_FACTS.test(query.sql),
        );
        expect(queries, 'one query event per statement').to.have.length(2);
        expect(queries[0]!.sql).to.match(
          dialect === 'postgres' ? /pg_try_advisory_lock/ : /GET_LOCK/,
        );
        expect(queries[1]!.sql).to.match(
          dialect === 'postgres' ? /pg_advisory_unlock/ : /RELEASE_LOCK/,
        );
        expect(queries[0]!.bindings).to.have.length.of.at.least(1);
        expect(responses.map((r) => r.__knexQueryUid)).to.deep.equal(
          all.map((q) => q.__knexQueryUid),
        );
      });
    }

    it('a knex instance nobody listens to is sent no events; a listener on its client or added later hears them', async () => {
      const emitted: string[] = [];
      const client = knex.client as { emit: (event: string, ...args: unknown[]) => boolean };
      const emit = client.emit;
      client.emit = function (this: unknown, event: string, ...args: unknown[]) {
        if ((args[0] as QueryEvent | undefined)?.source === 'knex-dlock') emitted.push(event);
        if ((args[1] as QueryEvent | undefined)?.source === 'knex-dlock') emitted.push(event);
        return emit.call(this, event, ...args);
      };
      try {
        const lock = createLock(knex, uniqueKey());
        const cycle = async () => {
          expect(await lock.acquire({ block: false })).to.equal(true);
          await lock.release();
        };
        await cycle();
        expect(emitted, 'events with nobody listening').to.deep.equal([]);
        const heard: string[] = [];
        const onQuery = (query: QueryEvent) => heard.push(query.sql);
        knex.client.on('query', onQuery);
        try {
          await cycle();
        } finally {
          knex.client.off('query', onQuery);
        }
        expect(heard, 'a listener on the client, added after the lock was made').to.have.length(2);
        expect(emitted).to.include('query').and.include('query-response');
        emitted.length = 0;
        await cycle();
        expect(emitted, 'once the listener is gone').to.deep.equal([]);
      } finally {
        client.emit = emit;
      }
    });

    it('a knex transaction reports its lock statements to the transaction and the instance, with its id', async () => {
      await knex.transaction(async (trx) => {
        const onTrx: QueryEvent[] = [];
        trx.on('query', (query: QueryEvent) => onTrx.push(query));
        const { queries } = await knexEvents(knex, async () => {
          const lock = createLock(trx, uniqueKey());
          expect(await lock.acquire()).to.equal(true);
          await lock.release();
        });
        expect(queries).to.have.length(2);
        expect(queries[0]!.__knexTxId).to.be.a('string');
        expect(onTrx.filter((q) => q.source === 'knex-dlock')).to.have.length(2);
      });
    });
  });
}

describe('knex query-error and DEBUG=knex:query for lock statements', () => {
  let knex: Knex;
  before(async () => {
    knex = await openKnex('postgres');
  });
  after(() => knex.destroy());

  it('a failed lock statement is reported as a query-error', async () => {
    const key = uniqueKey();
    const holder = createLock(knex, key);
    expect(await holder.acquire({ block: false })).to.equal(true);
    try {
      await knex.transaction(async (trx) => {
        // Inside a transaction the timed wait is a savepoint script that fails with 55P03.
        const { errors } = await knexEvents(knex, async () => {
          expect(await createLock(trx, key).acquire({ timeout: 50 })).to.equal(false);
        });
        expect(errors).to.have.length(1);
        expect((errors[0]!.error as { code?: string }).code).to.equal('55P03');
        expect(errors[0]!.query.source).to.equal('knex-dlock');
      });
    } finally {
      await holder.release();
    }
  });

  it('DEBUG=knex:query prints the lock statements as knex prints its own', async () => {
    const lines = await captureDebug('knex:query', async () => {
      const lock = createLock(knex, uniqueKey());
      expect(await lock.acquire({ block: false })).to.equal(true);
      await lock.release();
    });
    expect(lines.join('\n')).to.match(/knex:query .*pg_try_advisory_lock[\s\S]*pg_advisory_unlock/);
  });
});
