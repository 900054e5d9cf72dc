/**
 * Failover on private PostgreSQL servers: a primary and an asynchronous streaming standby that
 * falls behind (it is stopped while the primary hands out tokens), then takes over. Fencing
 * tokens keep increasing across the promotion, a holder on the old primary learns of its loss,
 * and new locks work on the promoted server.
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { createLock, setUpFencing, type LockLostError } from '../../src/index.js';
import {
  skipWithoutPrivateServers,
  startPostgresPair,
  type PostgresPair,
} from '../support/private-servers.js';
import { uniqueKey } from '../support/targets.js';

/** The sequence value the server at `url` would hand out next, as it knows it. */
async function sequenceValue(url: string): Promise<bigint> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ v: string }>(
      'SELECT last_value AS v FROM knex_dlock_fencing',
    );
    return BigInt(rows[0]!.v);
  } finally {
    await client.end();
  }
}

/** `count` fenced grants of `key` on `target`, one after another: their tokens. */
async function takeTokens(target: object, key: string, count: number): Promise<bigint[]> {
  const tokens: bigint[] = [];
  for (let i = 0; i < count; i += 1) {
    const lock = createLock(target, key, { fencing: true });
    expect(await lock.acquire({ timeout: 5_000 })).to.equal(true);
    tokens.push(lock.fencingToken!);
    await lock.release();
  }
  return tokens;
}

describe('fencing tokens across a failover to a lagging standby', function () {
  this.timeout(120_000);
  let pair: PostgresPair;
  const knexes: Knex[] = [];
  const connect = (url: string) => {
    const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 2 } });
    knexes.push(knex);
    return knex;
  };

  before(async function () {
    skipWithoutPrivateServers(this, 'postgres');
    pair = await startPostgresPair();
  });

  after(async () => {
    await Promise.all(knexes.map((knex) => knex.destroy().catch(() => undefined)));
    await pair?.stop();
  });

  it('every token of the promoted standby is larger than every token of the old primary', async () => {
    const key = uniqueKey('fenced');
    const primary = connect(pair.primary.url);
    await setUpFencing(primary);
    await takeTokens(primary, key, 5);
    await pair.caughtUp();
    // The standby falls behind: what the primary hands out now never reaches it.
    await pair.standby.stop();
    const before = await takeTokens(primary, key, 100);
    expect(before, 'tokens on the primary increase').to.deep.equal(
      [...before].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    const highest = before[before.length - 1]!;

    // A holder on the primary at the moment it goes away.
    const holderKnex = connect(pair.primary.url);
    let lost: LockLostError | undefined;
    const holder = createLock(holderKnex, uniqueKey('held'), {
      onLost: (error) => (lost = error),
    });
    expect(await holder.acquire()).to.equal(true);
    const signal = holder.signal!;
    await pair.primary.stop('immediate');
    if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve));
    expect(lost?.code).to.equal('ERR_DLOCK_LOST');
    expect(holder.locked).to.equal(false);

    await pair.standby.start();
    await pair.standby.promote();
    const promoted = connect(pair.standby.url);
    // The promoted server's sequence is behind: alone, its values would repeat old tokens.
    const behind = await sequenceValue(pair.standby.url);
    expect(behind < highest, `${behind} < ${highest}`).to.equal(true);
    const after = await takeTokens(promoted, key, 10);
    for (const token of after) expect(token > highest, `${token} > ${highest}`).to.equal(true);
    expect(after).to.deep.equal([...after].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));

    // New locks work on the promoted server, and exclude each other there.
    const first = createLock(promoted, key);
    const second = createLock(connect(pair.standby.url), key);
    expect(await first.acquire({ block: false })).to.equal(true);
    expect(await second.acquire({ block: false })).to.equal(false);
    await first.release();
    await second.close();
  });
});
