import type { Driver } from '../drivers/types.js';
import { leasedConnections } from './leased.js';
import { MultiplexedConnections, type LockConnectionSettings } from './multiplexed.js';
import type { ConnectionStrategy } from './strategy.js';

/** Where a pooled target's locks get their connections; see the `connection` option. */
export type ConnectionMode = 'multiplexed' | 'pool' | 'dedicated';

export const DEFAULT_LOCK_CONNECTION_SETTINGS: LockConnectionSettings = {
  max: 8,
  idleTimeout: 5_000,
  connection: undefined,
  lossDetection: undefined,
};

/** The lock connections of each pooled target, kept against the target's settings object. */
const multiplexed = new WeakMap<object, MultiplexedConnections>();

/** The target's lock connections, made on first use. */
export function lockConnectionsOf(driver: Driver): MultiplexedConnections {
  let connections = multiplexed.get(driver.identity);
  if (!connections) {
    const made = new MultiplexedConnections(driver, DEFAULT_LOCK_CONNECTION_SETTINGS);
    // The application's pool is ending: so do the lock connections opened beside it.
    driver.whenEnding?.(() => void made.close());
    multiplexed.set(driver.identity, made);
    connections = made;
  }
  return connections;
}

/** The target's lock connections if it has any yet. */
export function existingLockConnections(driver: Driver): MultiplexedConnections | undefined {
  return multiplexed.get(driver.identity);
}

/** The leased strategies of each target, made once: a lock is created far more often. */
const leased = new WeakMap<object, Partial<Record<ConnectionMode, ConnectionStrategy>>>();

/** The connection strategy for a lock on `driver`'s target. */
export function connectionStrategy(
  driver: Driver,
  mode: ConnectionMode = 'multiplexed',
): ConnectionStrategy {
  if (driver.pooled && mode === 'multiplexed') return lockConnectionsOf(driver);
  let strategies = leased.get(driver.identity);
  if (!strategies) leased.set(driver.identity, (strategies = {}));
  return (strategies[mode] ??= leasedStrategy(driver, mode));
}

function leasedStrategy(driver: Driver, mode: ConnectionMode): ConnectionStrategy {
  if (!driver.pooled) {
    return leasedConnections(driver.description, () => driver.lease(), false, false);
  }
  if (mode === 'pool') {
    return leasedConnections(driver.description, () => driver.lease(), true, true);
  }
  // Dedicated connections go where the lock connections are configured to go.
  return leasedConnections(
    driver.description,
    () => driver.open!(existingLockConnections(driver)?.settings.connection),
    true,
    true,
  );
}
