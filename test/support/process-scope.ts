import knexFactory, { type Knex } from 'knex';
import { databaseUrls } from './databases.js';
import { killStarted } from './processes.js';
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
