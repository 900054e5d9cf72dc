import { databaseUrls } from './databases.js';

/** Mocha root hooks: find (or start) the databases once, stop started containers at the end. */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(180_000);
    await databaseUrls();
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await (await databaseUrls()).stop();
  },
};
