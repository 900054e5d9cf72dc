/** The errors a lock's state machine throws, with messages that say what to do. */
import { LockAlreadyHeldError, LockLostError, LockNotHeldError } from '../errors.js';

export function alreadyHeld(state: 'held' | 'acquiring' | 'releasing'): LockAlreadyHeldError {
  return new LockAlreadyHeldError(
    `acquire() was called on a lock that is already ${state}: ` +
      'release it first, or create another lock object to stack on the same key.',
  );
}

export function lostBeforeRelease(): LockLostError {
  return new LockLostError(
    'The lock was lost when its connection died, so there is nothing to release: ' +
      'check lock.signal while holding a lock, and acquire it again if needed.',
  );
}

export function releaseNotHeld(): LockNotHeldError {
  return new LockNotHeldError(
    'release() was called on a lock that is not held: acquire it first, or use close(), ' +
      'which does nothing when the lock is not held.',
  );
}

export function lostWhileReleasing(cause?: unknown): LockLostError {
  return new LockLostError(
    'The lock was lost while it was being released.',
    cause === undefined ? undefined : { cause },
  );
}

export function notHeldInDatabase(): LockNotHeldError {
  return new LockNotHeldError(
    'The database did not hold this lock any more (something else released it, e.g. ' +
      'pg_advisory_unlock_all() or RELEASE_ALL_LOCKS() on the same connection).',
  );
}

export function closedWhileAcquiring(): LockNotHeldError {
  return new LockNotHeldError(
    'close() was called while acquire() was waiting, so the lock was not taken.',
  );
}

export function lost(key: string, cause: unknown): LockLostError {
  return new LockLostError(
    `The lock on ${key} was lost: its connection ended or failed. ` +
      'Stop the work it guards; acquire the lock again to continue.',
    { cause },
  );
}

/** Why a lock whose process stalled past the server's session limit counts as lost. */
export function stalled(): Error {
  return new Error(
    'This process stalled for longer than the server keeps a silent session (MySQL / MariaDB ' +
      'wait_timeout), so the server may have ended the session and freed the lock.',
  );
}
