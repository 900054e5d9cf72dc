import type { ConnectionStrategy } from '../connections/strategy.js';
import type { Dialect, LockMode } from '../dialects/dialect.js';
import type { LockLostError } from '../errors.js';

/** What a lock is built from; `createLock` makes it from the user's target and options. */
export interface LockParts<Key> {
  readonly strategy: ConnectionStrategy;
  readonly dialect: Dialect<Key>;
  readonly key: unknown;
  readonly actualKey: Key;
  readonly mode: LockMode;
  readonly onLost?: ((error: LockLostError) => void) | undefined;
  /** Milliseconds between keepalive checks while held; undefined for none. */
  readonly keepalive?: number | undefined;
}
