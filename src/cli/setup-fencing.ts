import { dialectModule } from '../dialects/registry.js';
import { setUpFencing } from '../api/fencing.js';
import { connect } from './connect.js';
import type { ConnectionSettings } from './connection-settings.js';
import type { Logger } from './log.js';

/**
 * `knex-dlock setup-fencing`: creates the store of fencing tokens if it is missing, prints one
 * line saying what now exists, and resolves 0. A failure (FencingUnavailableError) names the
 * statement to have run by a user who may create it, since that user is usually not the one
 * running this.
 */
export async function setUpFencingTokens(
  connection: ConnectionSettings,
  log: Logger,
  stdout: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const db = await connect(connection, 'knex-dlock setup-fencing');
  const store = dialectModule(db.dialect).dialect.fencingStore;
  try {
    log.debug(`connected to ${db.description} (settings from ${connection.source})`);
    log.debug(`running ${store.setup}`);
    await setUpFencing(db.target);
  } finally {
    await db.close();
  }
  stdout.write(`fencing tokens are ready: ${store.what} (${db.description})\n`);
  return 0;
}
