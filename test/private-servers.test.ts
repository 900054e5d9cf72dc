/**
 * The private servers that tests start from the installed binaries: a PostgreSQL primary with
 * a hot standby that can be promoted, a read-only MariaDB, a one-node Galera cluster, and a
 * PgBouncer whose transaction pool serves concurrent clients.
 */
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { LOCAL_PG_URL } from './support/databases.js';
import {
  skipWithoutPrivateServers,
  startMariadb,
  startPgbouncer,
  startPostgresPair,
  type PostgresPair,
  type PrivateMariadb,
  type PrivatePgbouncer,
} from './support/private-servers.js';

/** Runs `sql` on a new connection; the `value` column of its first row, if it has one. */
async function pgValue(url: string, sql: string): Promise<unknown> {
  const client = new pg.Client(url);
  try {
    await client.connect();
    const { rows } = await client.query<{ value: unknown }>(sql);
    return rows[0]?.value;
  } finally {
    await client.end();
  }
}

async function mysqlValue(url: string, sql: string): Promise<unknown> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await conn.query(sql);
    return (rows as { value: unknown }[])[0]!.value;
  } finally {
    await conn.end();
  }
}

describe('private servers', function () {
  this.timeout(60_000);

  describe('PostgreSQL primary and standby', () => {
    let pair: PostgresPair | undefined;
    before(async function () {
      this.timeout(120_000);
      skipWithoutPrivateServers(this, 'postgres');
      pair = await startPostgresPair();
    });
    after(async function () {
      this.timeout(120_000);
      await pair?.stop();
    });

    it('streams to a hot standby that can be promoted', async () => {
      const { primary, standby } = pair!;
      expect(await pgValue(primary.url, 'SELECT pg_is_in_recovery() AS value')).to.equal(false);
      expect(await pgValue(standby.url, 'SELECT pg_is_in_recovery() AS value')).to.equal(true);

      await pgValue(primary.url, 'CREATE TABLE replicated AS SELECT 42 AS value');
      await pair!.caughtUp();
      expect(await pgValue(standby.url, 'SELECT value FROM replicated')).to.equal(42);

      await standby.promote();
      expect(await pgValue(standby.url, 'SELECT pg_is_in_recovery() AS value')).to.equal(false);
    });
  });

  describe('MariaDB', () => {
    let readOnly: PrivateMariadb | undefined;
    let galera: PrivateMariadb | undefined;
    before(async function () {
      this.timeout(120_000);
      skipWithoutPrivateServers(this, 'galera');
      [readOnly, galera] = await Promise.all([
        startMariadb({ readOnly: true }),
        startMariadb({ galera: true }),
      ]);
    });
    after(async function () {
      this.timeout(120_000);
      await Promise.all([readOnly?.stop(), galera?.stop()]);
    });

    it('starts read-only when asked', async () => {
      expect(
        Number(await mysqlValue(readOnly!.url, 'SELECT @@global.read_only AS value')),
      ).to.equal(1);
    });

    it('starts a Galera node when asked', async () => {
      expect(Number(await mysqlValue(galera!.url, 'SELECT @@global.wsrep_on AS value'))).to.equal(
        1,
      );
    });
  });

  describe('PgBouncer', () => {
    let bouncer: PrivatePgbouncer | undefined;
    before(async function () {
      this.timeout(120_000);
      skipWithoutPrivateServers(this, 'pgbouncer');
      bouncer = await startPgbouncer({ upstreamUrl: LOCAL_PG_URL });
    });
    after(async function () {
      this.timeout(120_000);
      await bouncer?.stop();
    });

    it('serves concurrently open clients through transaction pooling, also after a restart', async () => {
      for (const round of ['first start', 'after restart']) {
        const clients = [
          new pg.Client(bouncer!.transactionUrl),
          new pg.Client(bouncer!.transactionUrl),
        ];
        try {
          await Promise.all(clients.map((client) => client.connect()));
          const pids = await Promise.all(
            clients.map((client) =>
              client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'),
            ),
          );
          for (const { rows } of pids) expect(rows[0]!.pid, round).to.be.a('number');
        } finally {
          await Promise.all(clients.map((client) => client.end()));
        }
        if (round === 'first start') await bouncer!.restart();
      }
      expect(await pgValue(bouncer!.sessionUrl, 'SELECT 1 AS value')).to.equal(1);
    });
  });
});
