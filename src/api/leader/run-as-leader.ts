/**
 * Leader election on a lock: the process that holds `key` leads. A campaign is a blocking
 * acquire, so a follower takes over as soon as the leader's lock is freed — at once when it
 * stops or its process dies, within the loss-detection bound when it vanishes silently.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidOptionError } from '../../errors.js';
import type { LockKey } from '../../keys.js';
import type { LockOptions } from '../../lock/options.js';
import { createLock, type LockTarget } from '../create-lock.js';

/** Options of {@link runAsLeader}: `createLock`'s, and how soon to campaign again. */
export interface LeaderOptions extends LockOptions {
  /**
   * Milliseconds to wait before campaigning again after a term ended (fn settled, or the lock
   * was lost) or a campaign failed (the database could not be reached). Doubles each time a
   * term or campaign ends within {@link LeaderOptions.retryMax} of its start, up to `retryMax`;
   * starts again from `retryDelay` after a longer term. Default 250.
   */
  retryDelay?: number;
  /** The longest wait between campaigns, in milliseconds. Default 30 000. */
  retryMax?: number;
  /** Called with what `fn` threw, or with why a campaign failed; the campaign goes on. */
  onError?: (error: unknown) => void;
}

/** What {@link runAsLeader} returns. */
export interface Leadership {
  /** Whether this process leads now (its `fn` runs and holds the lock). */
  readonly isLeader: boolean;
  /**
   * Stops campaigning: aborts the running term's signal, waits for `fn` to settle, and releases
   * the key, so that another process leads at once. Resolves when all that is done.
   */
  stop(): Promise<void>;
}

/**
 * Campaigns for `key` until stopped; while this process leads, runs `fn(signal)`, whose
 * `signal` aborts when leadership is lost (the lock's connection died or went silent) or
 * `stop()` is called. When `fn` returns or throws, or the lock is lost, the key is released
 * and the campaign starts again after a backoff (see {@link LeaderOptions.retryDelay}).
 *
 * @example
 * ```ts
 * const leadership = runAsLeader(knex, 'scheduler', async (signal) => {
 *   while (!signal.aborted) await runDueJobs(signal);
 * });
 * process.on('SIGTERM', () => void leadership.stop());
 * ```
 */
export function runAsLeader(
  target: LockTarget,
  key: LockKey,
  fn: (signal: AbortSignal) => Promise<void> | void,
  options: LeaderOptions = {},
): Leadership {
  const { retryDelay = 250, retryMax = 30_000, onError, ...lockOptions } = options;
  checkLeaderOptions(options, retryDelay, retryMax);
  if (typeof fn !== 'function') throw new InvalidOptionError('runAsLeader needs a function.');
  // Made here, so that a bad key or lock option throws now rather than in the campaign.
  const lock = createLock(target, key, lockOptions);
  const stopping = new AbortController();
  let leading = false;
  const report = (err: unknown) => {
    try {
      onError?.(err);
    } catch {
      // A failing error handler must not end the campaign.
    }
  };

  const campaign = async () => {
    let delay = 0;
    while (!stopping.signal.aborted) {
      let since = performance.now();
      try {
        if (await lock.acquire({ signal: stopping.signal })) {
          since = performance.now();
          leading = true;
          const term = eitherOf(lock.signal!, stopping.signal);
          await Promise.resolve()
            .then(() => fn(term.signal))
            .catch(report)
            .finally(term.detach);
        }
      } catch (err) {
        if (!stopping.signal.aborted) report(err);
      } finally {
        leading = false;
        await lock.close();
      }
      if (stopping.signal.aborted) break;
      // A term (or failed campaign) that ended soon backs off further; a long one starts over.
      const short = performance.now() - since < retryMax;
      delay = short && delay > 0 ? Math.min(delay * 2, retryMax) : retryDelay;
      await sleep(delay, undefined, { signal: stopping.signal }).catch(() => undefined);
    }
  };
  const running = campaign();

  return {
    get isLeader() {
      return leading;
    },
    async stop() {
      stopping.abort(new Error('runAsLeader stopped'));
      await running;
    },
  };
}

/** A signal that aborts with the reason of whichever of `a` and `b` aborts first. */
function eitherOf(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; detach: () => void } {
  const either = new AbortController();
  const fromA = () => either.abort(a.reason);
  const fromB = () => either.abort(b.reason);
  if (a.aborted) fromA();
  else if (b.aborted) fromB();
  a.addEventListener('abort', fromA, { once: true });
  b.addEventListener('abort', fromB, { once: true });
  const detach = () => {
    a.removeEventListener('abort', fromA);
    b.removeEventListener('abort', fromB);
  };
  return { signal: either.signal, detach };
}

function checkLeaderOptions(options: LeaderOptions, retryDelay: number, retryMax: number): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('runAsLeader options must be an object.');
  }
  for (const [name, value] of [
    ['retryDelay', retryDelay],
    ['retryMax', retryMax],
  ] as const) {
    if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
      throw new InvalidOptionError(`Option "${name}" must be a number of milliseconds, 0 or more.`);
    }
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new InvalidOptionError('Option "onError" must be a function.');
  }
}
