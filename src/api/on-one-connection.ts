import type { Driver, SqlSession } from '../drivers/types.js';
import { databaseError, DlockError } from '../errors.js';

/**
 * Runs `action` on one connection of `driver`'s target (a pooled one is borrowed, then given
 * back) for statements that take no lock; a driver error becomes a LockDatabaseError that
 * names `what`.
 */
export async function onOneConnection<T>(
  driver: Driver,
  what: string,
  action: (session: SqlSession) => Promise<T>,
): Promise<T> {
  let lease;
  try {
    lease = await driver.lease();
  } catch (err) {
    throw err instanceof DlockError ? err : databaseError('Getting a connection', err);
  }
  try {
    return await action(lease.session);
  } catch (err) {
    throw err instanceof DlockError ? err : databaseError(what, err);
  } finally {
    await lease.release();
  }
}
