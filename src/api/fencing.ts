import type { LockTarget } from './create-lock.js';
import { dialectModule } from '../dialects/registry.js';
import { detectTarget } from '../drivers/detect.js';
import { FencingUnavailableError } from '../errors.js';
import { onOneConnection } from './on-one-connection.js';

/**
 * Creates what fencing tokens need (`fencing: true`), if it is missing: on PostgreSQL the
 * sequence `knex_dlock_fencing`, on MySQL / MariaDB the table `knex_dlock_fencing`. Locks create
 * it on first use where they can; call this from a migration or a deploy step when the
 * application's database user may not create objects, then grant that user USAGE on the
 * sequence (PostgreSQL) or SELECT, INSERT, UPDATE on the table (MySQL). Running it again
 * changes nothing.
 *
 * @example
 * ```ts
 * await setUpFencing(knex); // e.g. in a knex migration's up()
 * ```
 */
export async function setUpFencing(target: LockTarget): Promise<void> {
  const driver = detectTarget(target);
  const store = dialectModule(driver.dialect).dialect.fencingStore;
  await onOneConnection(driver, 'Setting up fencing tokens', async (session) => {
    try {
      await session.query(store.setup);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      throw new FencingUnavailableError(
        `The ${store.what} for fencing tokens could not be created (${detail}): run ` +
          `\`${store.setup}\` as a user who may create it, then \`${store.grant}\` for the ` +
          'users that lock.',
        { cause: err },
      );
    }
  });
}
