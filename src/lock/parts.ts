import type { ConnectionStrategy, Pooler } from '../connections/strategy.js';
import type { Dialect, LockMode } from '../dialects/dialect.js';
import type { LockLostError } from '../errors.js';
import type { ChannelConnection } from '../diagnostics.js';
import type { HealthSchedule } from '../loss-detection.js';

/** What a lock is built from; `createLock` makes it from the user's target and options. */
export interface LockParts<Key> {
  readonly strategy: ConnectionStrategy;
  readonly dialect: Dialect<Key>;
  readonly key: unknown;
  readonly actualKey: Key;
  readonly mode: LockMode;
  readonly onLost?: ((error: LockLostError) => void) | undefined;
  /** How the connection is checked while the lock is held; undefined for no checks. */
  readonly health?: HealthSchedule | undefined;
  /** The server's bound on a silent peer (ms) to set on the session; undefined for none. */
  readonly serverBound?: number | undefined;
  /** Whether the lock may be taken on a server whose locks are local to it. Default false. */
  readonly serverLocal?: boolean | undefined;
  /** The pooler in front of the server, as the user declared it; undefined to detect. */
  readonly pooler?: Pooler | undefined;
  /** Where the lock's connection comes from, for the diagnostics channels. Default 'caller'. */
  readonly connection?: ChannelConnection | undefined;
}
