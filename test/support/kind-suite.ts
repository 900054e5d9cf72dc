/**
 * The fixture of a suite that runs on one target kind: the targets and locks its tests open,
 * an inspector of the database's lock tables and a watcher of lock waits, all closed after,
 * and after each test a check that no lock is left held.
 */
import { expect } from 'chai';
import { createLock, type BaseLock, type LockOptions } from '../../src/index.js';
import { watchLockWaits, type LockWaitWatcher } from './server-state.js';
import { openInspector, type LockInspector, type OpenTarget, type TargetKind } from './targets.js';

export interface KindSuite {
  readonly inspector: LockInspector;
  readonly waits: LockWaitWatcher;
  /** Opens an instance of the kind, closed after the test. */
  open(): Promise<object>;
  /** A lock with the suite's default options (or `options`), closed after the test. */
  lockOn(target: object, key: string, options?: LockOptions): BaseLock;
}

/**
 * The `pooler` option every PostgreSQL lock of a contract suite gets, from DLOCK_TEST_POOLER:
 * set when the suite runs through a pooler (test/deployments/pgbouncer.test.ts).
 */
export function poolerOption(kind: TargetKind): LockOptions {
  const pooler = process.env.DLOCK_TEST_POOLER;
  if (kind.dialect !== 'postgres' || (pooler !== 'session' && pooler !== 'transaction')) return {};
  return { pooler };
}

/** Registers the hooks of a suite on `kind`; call it inside the suite's `describe`. */
export function kindSuite(kind: TargetKind, suiteDefaults: LockOptions = {}): KindSuite {
  const defaults = { ...poolerOption(kind), ...suiteDefaults };
  let inspector: LockInspector | undefined;
  let waits: LockWaitWatcher | undefined;
  const opened: OpenTarget[] = [];
  const locks: BaseLock[] = [];

  before(async () => {
    inspector = await openInspector(kind.dialect);
    waits = await watchLockWaits(kind.dialect);
  });

  after(async () => {
    await inspector?.close();
    await waits?.close();
  });

  afterEach(async () => {
    await Promise.all(locks.splice(0).map((lock) => lock.close().catch(() => undefined)));
    // Checked while pools are still open: a pooled connection must not keep a lock.
    const leftovers = await inspector!.leftovers();
    await Promise.all(opened.splice(0).map((target) => target.close()));
    expect(leftovers, 'locks left held after the test').to.deep.equal([]);
  });

  return {
    get inspector() {
      return inspector!;
    },
    get waits() {
      return waits!;
    },
    async open() {
      const target = await kind.open();
      opened.push(target);
      return target.target;
    },
    lockOn(target, key, options) {
      const lock = createLock(
        target,
        key,
        options ? { ...poolerOption(kind), ...options } : defaults,
      );
      locks.push(lock);
      return lock;
    },
  };
}
