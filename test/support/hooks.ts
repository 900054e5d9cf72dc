import { databaseUrls } from './databases.js';

/** Mocha root hooks: find (or start) the databases once, stop the ones started at the end. */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(180_000);
    await databaseUrls();
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    // If no database was found, beforeAll already said so: say it once.
    const urls = await databaseUrls().catch(() => undefined);
    await urls?.stop();
  },
};
