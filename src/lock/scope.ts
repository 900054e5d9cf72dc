import type { Hold } from '../connections/strategy.js';
import type { LockMode } from '../dialects/dialect.js';

/**
 * How a hold ends: a session-level lock when it is released; a transaction-level lock only with
 * its transaction. The lock asks its scope rather than branching on its mode.
 */
export interface LockScope {
  /**
   * Whether release() may unlock now. A transaction-level lock cannot be released early: it
   * warns and keeps its hold.
   */
  releasable(): boolean;
  /** Whether close() unlocks a hold. */
  readonly closeReleases: boolean;
  /** Whether `hold` has ended by itself, without a release (its transaction ended). */
  ended(hold: Hold): boolean;
  /**
   * Whether a hold still in place when its transaction is about to end is released then, with
   * a warning, so that the connection goes back to the pool clean.
   */
  releaseAtTransactionEnd(): boolean;
}

const sessionScope: LockScope = {
  releasable: () => true,
  closeReleases: true,
  ended: () => false,
  releaseAtTransactionEnd() {
    process.emitWarning(
      'A session-level lock was still held when its transaction ended; it was released so ' +
        'that the connection goes back to the pool clean. Release locks before the transaction ends.',
      { code: 'DLOCK_RELEASED_AT_TRANSACTION_END' },
    );
    return true;
  },
};

const transactionScope: LockScope = {
  releasable() {
    process.emitWarning(
      'A transaction-level lock is held until its transaction ends; release() changed nothing.',
      { code: 'DLOCK_XACT_RELEASE' },
    );
    return false;
  },
  closeReleases: false,
  ended: (hold) => !hold.session.inTransaction(),
  releaseAtTransactionEnd: () => false,
};

export function scopeOf(mode: LockMode): LockScope {
  return mode.xact ? transactionScope : sessionScope;
}
