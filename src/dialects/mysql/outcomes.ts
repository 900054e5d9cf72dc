import { databaseError, LockDeadlockError, type DlockError } from '../../errors.js';
import { errorNumber } from '../dialect.js';

/** MariaDB's error for a deadlock between named-lock waits (SQLSTATE 40001). */
export const ER_LOCK_DEADLOCK = 1213;
/** MySQL's error (5.7.5 and later) for a deadlock between named-lock waits. */
export const ER_USER_LOCK_DEADLOCK = 3058;
/** MySQL fails a GET_LOCK wait ended by `KILL QUERY` with this error; MariaDB returns NULL. */
export const ER_QUERY_INTERRUPTED = 1317;

const DEADLOCK_ERRNOS: ReadonlySet<unknown> = new Set([ER_LOCK_DEADLOCK, ER_USER_LOCK_DEADLOCK]);

/**
 * How one `GET_LOCK` statement ended, as the MySQL dialect acts on it:
 * - `acquired`: the session holds the name;
 * - `not-acquired`: the wait ended without the lock (timed out, busy for a try, or MariaDB's NULL
 *   after a `KILL QUERY` that this attempt asked for);
 * - `interrupted`: MySQL's error 1317 after a `KILL QUERY` that this attempt asked for; the
 *   statement failed, but the kill may have landed just after the grant, so the name may be held;
 * - `failed`: anything else, as the typed error to throw.
 */
export type GetLockOutcome =
  | { readonly kind: 'acquired' }
  | { readonly kind: 'not-acquired' }
  | { readonly kind: 'interrupted' }
  | { readonly kind: 'failed'; readonly error: DlockError };

/**
 * What the value of `GET_LOCK(name, seconds)` means: 1 acquired, 0 timed out. NULL is MariaDB's
 * answer to a wait ended by `KILL QUERY` (and its answer to a bad name): when `cancelled`, this
 * attempt asked for the kill and nothing was granted; otherwise it is an error.
 *
 * @example
 * ```ts
 * getLockValueOutcome(1n, false, 'jobs'); // { kind: 'acquired' }
 * getLockValueOutcome(null, true, 'jobs'); // { kind: 'not-acquired' }
 * ```
 */
export function getLockValueOutcome(
  value: unknown,
  cancelled: boolean,
  name: string,
): GetLockOutcome {
  if (value === 1 || value === 1n) return { kind: 'acquired' };
  if (value === 0 || value === 0n || cancelled) return { kind: 'not-acquired' };
  return {
    kind: 'failed',
    error: databaseError('GET_LOCK', new Error(`GET_LOCK(${JSON.stringify(name)}) returned NULL`)),
  };
}

/**
 * What a failed `GET_LOCK` statement means: a deadlock (MariaDB 1213, MySQL 3058) is a
 * {@link LockDeadlockError}, in which the database granted nothing; MySQL's 1317 after a
 * `KILL QUERY` that this attempt asked for (`cancelled`) is `interrupted`; anything else,
 * 1317 included when nobody here asked for a kill, is a database error.
 */
export function getLockErrorOutcome(err: unknown, cancelled: boolean): GetLockOutcome {
  const errno = errorNumber(err);
  if (errno === ER_QUERY_INTERRUPTED && cancelled) return { kind: 'interrupted' };
  if (DEADLOCK_ERRNOS.has(errno)) {
    return {
      kind: 'failed',
      error: new LockDeadlockError(
        'The database detected a deadlock between named-lock waits and failed this one: ' +
          'take locks in the same order everywhere, then retry.',
        { cause: err },
      ),
    };
  }
  return { kind: 'failed', error: databaseError('GET_LOCK', err) };
}
