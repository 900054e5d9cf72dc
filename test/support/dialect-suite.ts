/**
 * The set-up that a dialect's test suite shares: an inspector and a knex instance for the whole
 * suite, connections closed after each test, and a check that no test leaves a lock held.
 */
import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { databaseUrls } from './databases.js';
import { openInspector, type DialectName, type LockInspector } from './targets.js';

export interface DialectSuite {
  readonly inspector: LockInspector;
  readonly knex: Knex;
  /** Closes `close` after the current test. */
  closeAfterTest(close: () => Promise<unknown>): void;
}

/** Registers the suite's hooks; call it at the top of a `describe`. */
export function dialectSuite(dialect: DialectName): DialectSuite {
  let inspector: LockInspector | undefined;
  let knex: Knex | undefined;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    const urls = await databaseUrls();
    inspector = await openInspector(dialect);
    knex = knexFactory({
      client: dialect === 'postgres' ? 'pg' : 'mysql2',
      connection: dialect === 'postgres' ? urls.pg : urls.mysql,
      pool: { min: 0, max: 4 },
    });
  });
  after(async () => {
    await inspector?.close();
    await knex?.destroy();
  });
  afterEach(async () => {
    // Checked before the connections close, which would free any lock they still hold.
    const leftovers = await inspector!.leftovers();
    await Promise.all(closers.splice(0).map((close) => close().catch(() => undefined)));
    expect(leftovers, 'locks left held after the test').to.deep.equal([]);
  });
  return {
    get inspector() {
      return inspector!;
    },
    get knex() {
      return knex!;
    },
    closeAfterTest: (close) => void closers.push(close),
  };
}
