// The declarations use Node's AbortSignal and AsyncDisposable: the reference keeps Node's types
// in the emitted index.d.ts (tsc drops it without preserve="true").
/// <reference types="node" preserve="true" />
export { createLock, type LockTarget } from './api/create-lock.js';
export type { RegisteredLock, RegisteredLocks } from './locks/registry.js';
export { withLock, type WithLockOptions } from './api/with-lock.js';
export { createMultiLock } from './api/multi-lock/create-multi-lock.js';
export { MultiLock } from './api/multi-lock/multi-lock.js';
export {
  createSemaphore,
  withSemaphore,
  type SemaphoreOptions,
  type WithSemaphoreOptions,
} from './api/semaphore/create-semaphore.js';
export { Semaphore } from './api/semaphore/semaphore.js';
export { runAsLeader, type LeaderOptions, type Leadership } from './api/leader/run-as-leader.js';
export { setUpFencing } from './api/fencing.js';
export { BaseLock } from './lock/base-lock.js';
export { PostgresLock } from './locks/postgres-lock.js';
export { MysqlLock } from './locks/mysql-lock.js';
export type { AcquireOptions, LockOptions } from './lock/options.js';
export type { Pooler } from './connections/strategy.js';
export type {
  AcquireChannelContext,
  ChannelConnection,
  LockChannelContext,
  LostChannelMessage,
  ReleaseChannelContext,
} from './diagnostics.js';
export type { LossDetection } from './loss-detection.js';
export type { ConnectionMode } from './connections/registry.js';
export type { LockKey } from './keys.js';
export {
  DlockError,
  LockNotHeldError,
  LockAlreadyHeldError,
  LockTimeoutError,
  InvalidKeyError,
  InvalidOptionError,
  UnsupportedTargetError,
  LockLostError,
  LockDeadlockError,
  LockDatabaseError,
  LockTableFullError,
  PoolTimeoutError,
  FencingUnavailableError,
  ServerLocalLockError,
  BehindPoolerError,
  type ServerLocality,
  type DlockErrorCode,
} from './errors.js';
export {
  inspectLock,
  type InspectLockOptions,
  type LockHolder,
  type LockInspection,
} from './api/inspect.js';
export {
  migrateLatest,
  withMigrationLock,
  DEFAULT_MIGRATION_LOCK_KEY,
  type MigrateLatestOptions,
  type MigrateLatestResult,
  type MigratingKnex,
  type MigrationLockOptions,
} from './api/migrate.js';
export {
  configureLockConnections,
  closeLockConnections,
  lockConnectionStats,
  type LockConnectionOptions,
  type LockConnectionStats,
} from './api/lock-connections.js';
