import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { databaseUrls } from './databases.js';
import { killStarted, type Started } from './processes.js';
import type { DialectName } from './targets.js';

/** What the tests of one cross-process `describe` share: see {@link crossProcessScope}. */
export interface CrossProcessScope {
  /** A knex instance on the dialect's database, for the test's own queries. */
  readonly knex: Knex;
  /** A table name of the test's own, dropped after it. */
  readonly table: string;
}

/**
 * Mocha hooks for a cross-process `describe`: a knex instance, a fresh table name per test, and,
 * after each test, every child process it left running killed and its table dropped.
 */
export function crossProcessScope(
  dialect: DialectName,
  client: string,
  tablePrefix: string,
): CrossProcessScope {
  let knex: Knex | undefined;
  let table = '';
  before(async () => {
    const urls = await databaseUrls();
    knex = knexFactory({ client, connection: dialect === 'postgres' ? urls.pg : urls.mysql });
  });
  after(() => knex?.destroy());
  beforeEach(() => {
    table = `${tablePrefix}_${process.pid}_${Date.now()}`;
  });
  afterEach(async () => {
    killStarted();
    await knex!.schema.dropTableIfExists(table);
  });
  return {
    get knex() {
      return knex!;
    },
    get table() {
      return table;
    },
  };
}

/** The environment that points a child worker at the test databases. */
export async function workerEnv(): Promise<Record<string, string>> {
  const urls = await databaseUrls();
  return { DLOCK_PG_URL: urls.pg, DLOCK_MYSQL_URL: urls.mysql };
}

/** Resolves once `worker` exits with code 0; fails with its stderr otherwise. */
export async function succeed(worker: Started): Promise<void> {
  const exit = await worker.exited;
  expect(exit.code, `worker failed: ${worker.stderr()}`).to.equal(0);
}
