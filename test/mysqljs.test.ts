/**
 * knex's `mysql` client, over the older mysql driver (mysqljs), beyond the contract suites,
 * which run on it too (test/support/targets.ts): where mysqljs keeps the server version, how it
 * closes, and a lock left held in a knex transaction.
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { createLock } from '../src/index.js';
import { serverFlavor } from '../src/dialects/mysql/dialect.js';
import { knexDriver, type KnexLike } from '../src/drivers/knex.js';
import { mysqlConnectionDriver, type MysqlConnectionLike } from '../src/drivers/mysql2.js';
import { databaseUrls } from './support/databases.js';
import { captureWarnings } from './support/expect.js';
import { mysqlServerFlavor } from './support/mysql-flavor.js';
import { openInspector, uniqueKey } from './support/targets.js';

describe("knex's mysql client (mysqljs)", () => {
  let knex: Knex;

  before(async () => {
    knex = knexFactory({
      client: 'mysql',
      connection: (await databaseUrls()).mysql,
      pool: { min: 0, max: 2 },
    });
  });
  after(() => knex.destroy());

  it('the server flavour comes from the handshake, as SELECT VERSION() names it', async () => {
    const lease = await knexDriver(knex as unknown as KnexLike, 'mysql').lease();
    try {
      expect(serverFlavor(lease.session)).to.equal(await mysqlServerFlavor());
    } finally {
      await lease.release();
    }
  });

  for (const [version, flavor] of [
    ['8.0.36', 'mysql'],
    ['5.5.5-10.11.6-MariaDB-log', 'mariadb'],
  ] as const) {
    it(`a handshake naming ${version} is read as ${flavor}`, async () => {
      const raw = (await knex.client.acquireRawConnection()) as MysqlConnectionLike;
      try {
        const packet = raw._protocol?._handshakeInitializationPacket;
        expect(packet?.serverVersion).to.be.a('string');
        packet!.serverVersion = version;
        const lease = await mysqlConnectionDriver(raw, 'mysql').lease();
        expect(serverFlavor(lease.session)).to.equal(flavor);
        await lease.release();
      } finally {
        await knex.client.destroyRawConnection(raw);
      }
    });
  }

  it('a session lock still held when its knex transaction ends is released, with a warning', async () => {
    const inspector = await openInspector('mysql');
    try {
      let lock: ReturnType<typeof createLock> | undefined;
      const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', () =>
        knex.transaction(async (trx) => {
          lock = createLock(trx, uniqueKey('mysqljs-trx'));
          expect(await lock.acquire({ timeout: 1_000 })).to.equal(true);
          expect(await inspector.holders(lock.actualKey)).to.equal(1);
        }),
      );
      expect(warnings).to.have.length(1);
      expect(lock!.locked).to.equal(false);
      expect(await inspector.holders(lock!.actualKey)).to.equal(0);
    } finally {
      await inspector.close();
    }
  });

  it('destroying a connection of its own does not wait for the server’s goodbye', async () => {
    const lease = await knexDriver(knex as unknown as KnexLike, 'mysql').open!();
    const started = performance.now();
    expect(await lease.destroy()).to.equal(true);
    expect(performance.now() - started).to.be.below(1_000);
  });
});
