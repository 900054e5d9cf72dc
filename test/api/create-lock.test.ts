import { expect } from 'chai';
import knexFactory from 'knex';
import pg from 'pg';
import { createLock, withLock } from '../../src/index.js';
import { expectNothingSent } from '../support/counting.js';
import { databaseUrls } from '../support/databases.js';
import { expectRejectCode, expectThrowCode } from '../support/expect.js';
import { TARGET_KINDS, uniqueKey } from '../support/targets.js';

describe('createLock input checks', () => {
  it('plain objects, null-ish and primitive targets throw ERR_DLOCK_UNSUPPORTED_TARGET', () => {
    for (const target of [{}, [], Object.create(null), new Map(), () => undefined]) {
      const err = expectThrowCode(() => createLock(target, 'k'), 'ERR_DLOCK_UNSUPPORTED_TARGET');
      expect(err.message).to.match(/Supported: a knex instance/);
    }
    for (const target of [null, undefined, 'postgres://x', 5]) {
      expectThrowCode(() => createLock(target as never, 'k'), 'ERR_DLOCK_UNSUPPORTED_TARGET');
    }
  });

  it('knex clients without real advisory locks throw ERR_DLOCK_UNSUPPORTED_TARGET naming the client', async () => {
    for (const [client, driverName] of [
      ['cockroachdb', 'cockroachdb'],
      ['redshift', 'pg-redshift'],
    ]) {
      const knex = knexFactory({ client, connection: 'postgres://127.0.0.1:1/none' });
      const err = expectThrowCode(() => createLock(knex, 'k'), 'ERR_DLOCK_UNSUPPORTED_TARGET');
      expect(err.message).to.include(`"${driverName}"`);
      await knex.destroy();
    }
  });

  it('unknown or mistyped lock options throw ERR_DLOCK_INVALID_OPTION', () => {
    const pool = new pg.Pool();
    const bad: object[] = [
      { shraed: true },
      { shared: 'yes' },
      { xact: 1 },
      { convert: 'fn' },
      { connection: 'solo' },
      { onLost: true },
    ];
    for (const options of bad) {
      expectThrowCode(() => createLock(pool, 'k', options as never), 'ERR_DLOCK_INVALID_OPTION');
    }
    return pool.end();
  });

  it('connection: "dedicated" on a single connection throws ERR_DLOCK_INVALID_OPTION', async () => {
    const client = new pg.Client();
    expectThrowCode(
      () => createLock(client, 'k', { connection: 'dedicated' }),
      'ERR_DLOCK_INVALID_OPTION',
    );
  });

  it('a convert function decides the key, and its result is checked', () => {
    const pool = new pg.Pool();
    const lock = createLock(pool, { tenant: 7 }, { convert: (k) => BigInt(k.tenant) });
    expect(lock.actualKey).to.equal(7n);
    expect(lock.key).to.deep.equal({ tenant: 7 });
    expectThrowCode(
      () => createLock(pool, 'k', { convert: () => 2n ** 64n }),
      'ERR_DLOCK_INVALID_KEY',
    );
    expectThrowCode(
      () => createLock(pool, 'k', { convert: () => 'text' }),
      'ERR_DLOCK_INVALID_KEY',
    );
    return pool.end();
  });

  for (const kind of TARGET_KINDS) {
    it(`bad acquire options reject with ERR_DLOCK_INVALID_OPTION before any query on ${kind.name}`, async () => {
      const opened = await kind.open();
      try {
        const lock = createLock(opened.target, uniqueKey());
        const bad: object[] = [
          { timeout: NaN },
          { timeout: '100' },
          { block: 'no' },
          { signal: {} },
          { tiemout: 5 },
        ];
        await expectNothingSent(opened.target, async () => {
          for (const options of bad) {
            await expectRejectCode(lock.acquire(options as never), 'ERR_DLOCK_INVALID_OPTION');
          }
          expect(lock.locked).to.equal(false);
          await expectRejectCode(
            withLock(opened.target, uniqueKey(), () => undefined, { timeout: NaN }),
            'ERR_DLOCK_INVALID_OPTION',
          );
        });
      } finally {
        await opened.close();
      }
    });

    it(`bad keys throw ERR_DLOCK_INVALID_KEY at createLock on ${kind.name}`, async () => {
      const opened = await kind.open();
      try {
        for (const key of [NaN, Infinity, {}, null, true, 'a\uD800']) {
          expectThrowCode(() => createLock(opened.target, key as never), 'ERR_DLOCK_INVALID_KEY');
        }
      } finally {
        await opened.close();
      }
    });
  }

  it('negative and huge timeouts are accepted: negative tries once, huge waits forever', async () => {
    const pool = new pg.Pool({ connectionString: (await databaseUrls()).pg, max: 2 });
    try {
      const key = uniqueKey();
      const holder = createLock(pool, key);
      await holder.acquire({ timeout: -5 });
      const waiter = createLock(pool, key);
      expect(await waiter.acquire({ timeout: -1 })).to.equal(false);
      const waiting = waiter.acquire({ timeout: 1e15 });
      await holder.release();
      expect(await waiting).to.equal(true);
      await waiter.release();
      expect(await holder.acquire({ timeout: Infinity })).to.equal(true);
      await holder.release();
    } finally {
      await pool.end();
    }
  });
});
