/**
 * The embedded PostgreSQL that the tests and the example start where no server answers, started
 * through the same code path with DLOCK_PG_EMBEDDED=1 although a server may answer here.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { createLock } from '../src/index.js';
import { findPostgres, pgAnswers, type FoundDatabase } from './support/databases.js';

describe('embedded PostgreSQL (DLOCK_PG_EMBEDDED=1)', function () {
  this.timeout(90_000);
  let embedded: FoundDatabase | undefined;
  const clients: pg.Client[] = [];

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.end().catch(() => undefined)));
    await embedded?.stop();
  });

  it('starts in a temporary directory, serves locks, and is gone with its directory after stop()', async () => {
    embedded = await findPostgres({ DLOCK_PG_EMBEDDED: '1' });
    expect(embedded.source).to.equal('embedded');
    expect(embedded.dir && existsSync(embedded.dir), 'data directory').to.equal(true);
    const [a, b] = [new pg.Client(embedded.url), new pg.Client(embedded.url)];
    clients.push(a, b);
    await Promise.all([a.connect(), b.connect()]);
    const { rows } = await a.query<{ server_version: string }>('SHOW server_version');
    expect(rows[0]!.server_version).to.match(/^15\./);

    const held = createLock(a, 'embedded-postgres');
    const other = createLock(b, 'embedded-postgres');
    expect(await held.acquire({ block: false })).to.equal(true);
    expect(await other.acquire({ block: false })).to.equal(false);
    await held.release();
    expect(await other.acquire({ timeout: 1_000 })).to.equal(true);
    await other.release();

    await Promise.all(clients.splice(0).map((client) => client.end()));
    await embedded.stop();
    expect(existsSync(embedded.dir!), 'data directory after stop()').to.equal(false);
    expect(await pgAnswers(embedded.url), 'answers after stop()').to.equal(false);
  });
});
