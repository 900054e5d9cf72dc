/**
 * A lock's operations on the `node:diagnostics_channel` channels (see diagnostics.ts). The lock
 * calls these only when its channel has a subscriber, so that nothing here runs otherwise.
 */
import type { ReleaseOutcome } from '../connections/strategy.js';
import type { Wait } from '../dialects/dialect.js';
import {
  acquireChannel,
  lostChannel,
  releaseChannel,
  type AcquireChannelContext,
  type LockChannelContext,
  type LostChannelMessage,
  type ReleaseChannelContext,
} from '../diagnostics.js';

/** Runs `acquire` as one `knex-dlock:acquire` trace. */
export function traceAcquireOnChannel(
  lock: LockChannelContext,
  wait: Wait,
  acquire: () => Promise<boolean>,
  token: () => bigint | undefined,
): Promise<boolean> {
  const context: AcquireChannelContext = {
    ...lock,
    wait: wait.kind,
    timeout: wait.kind === 'timed' ? wait.ms : undefined,
  };
  const started = performance.now();
  return acquireChannel.tracePromise(async () => {
    try {
      const acquired = await acquire();
      context.outcome = acquired ? 'acquired' : 'not-acquired';
      if (acquired) context.token = token();
      return acquired;
    } catch (err) {
      context.outcome = 'error';
      throw err;
    } finally {
      context.waitMs = performance.now() - started;
    }
  }, context);
}

/** Runs `release` as one `knex-dlock:release` trace. */
export function traceReleaseOnChannel(
  lock: LockChannelContext,
  heldMs: number,
  release: () => Promise<ReleaseOutcome>,
): Promise<ReleaseOutcome> {
  const context: ReleaseChannelContext = { ...lock, heldMs };
  return releaseChannel.tracePromise(async () => {
    const outcome = await release();
    context.outcome = outcome;
    return outcome;
  }, context);
}

/** Tells `knex-dlock:lost` that a held lock was lost. */
export function publishLoss(lock: LockChannelContext, error: Error, heldMs: number): void {
  const message: LostChannelMessage = { ...lock, error, heldMs };
  lostChannel.publish(message);
}
