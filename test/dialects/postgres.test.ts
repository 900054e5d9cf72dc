import { expect } from 'chai';
import pg from 'pg';
import { undoStrayGrantStatement } from '../../src/dialects/postgres/sql.js';
import { PostgresLock } from '../../src/index.js';
import { databaseUrls } from '../support/databases.js';

describe('PostgreSQL dialect: undoing a grant that raced a failed wait', () => {
  let client: pg.Client;
  before(async () => {
    client = new pg.Client({ connectionString: (await databaseUrls()).pg });
    await client.connect();
  });
  after(() => client.end());

  /** How many modes of `key` this session holds. */
  const held = async (key: bigint) => {
    const unsigned = BigInt.asUintN(64, key);
    const { rows } = await client.query(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
         AND pid = pg_backend_pid() AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1`,
      [String(unsigned >> 32n), String(unsigned & 0xffffffffn)],
    );
    return rows[0].n as number;
  };

  for (const key of [PostgresLock.convert('race-undo'), -1n, 0n, 2n ** 63n - 1n, -(2n ** 63n)]) {
    for (const shared of [false, true]) {
      it(`removes a stray ${shared ? 'shared' : 'exclusive'} grant on ${key} and nothing else`, async () => {
        const fn = shared ? 'pg_advisory_lock_shared' : 'pg_advisory_lock';
        await client.query(`SELECT ${fn}($1)`, [key]);
        expect(await held(key)).to.equal(1);
        await client.query(undoStrayGrantStatement({ shared: !shared, xact: false }).text, [key]);
        expect(await held(key), 'the other mode must be left alone').to.equal(1);
        await client.query(undoStrayGrantStatement({ shared, xact: false }).text, [key]);
        expect(await held(key)).to.equal(0);
        await client.query(undoStrayGrantStatement({ shared, xact: false }).text, [key]);
        expect(await held(key)).to.equal(0);
      });
    }
  }
});
