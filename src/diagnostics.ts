/**
 * The library's `node:diagnostics_channel` channels, for APM tools and tests: a tracing channel
 * for each acquire and each release, and a channel for losses (see docs/inspection-and-
 * observability.md for the payloads). Nothing is built or published unless a subscriber is
 * there, so the channels cost one check per operation when nobody listens.
 */
import diagnostics from 'node:diagnostics_channel';

/** Where a lock's connection comes from, in the payloads. */
export type ChannelConnection = 'caller' | 'multiplexed' | 'pool' | 'dedicated';

/** What every payload says about the lock. */
export interface LockChannelContext {
  /** The key as the caller gave it, as text. */
  readonly key: string;
  /** The key as the database sees it: an int64 (PostgreSQL) or a lock name (MySQL). */
  readonly actualKey: bigint | string;
  /** The dialect: `'postgres'` or `'mysql'`. */
  readonly dialect: string;
  readonly connection: ChannelConnection;
  readonly shared: boolean;
  readonly xact: boolean;
  readonly fencing: boolean;
}

/** The payload of `knex-dlock:acquire`: given at start, completed at end. */
export interface AcquireChannelContext extends LockChannelContext {
  /** `'try'`, `'forever'` or `'timed'`. */
  readonly wait: 'try' | 'forever' | 'timed';
  /** The timed wait's limit in milliseconds; undefined for the others. */
  readonly timeout: number | undefined;
  /** How it ended: granted, not granted (busy or timed out), or rejected. */
  outcome?: 'acquired' | 'not-acquired' | 'error';
  /** Milliseconds from the start to the outcome. */
  waitMs?: number;
  /** The grant's fencing token, with `fencing: true`. */
  token?: bigint | undefined;
  /** Set by the tracing channel: the acquire's result (true or false). */
  result?: unknown;
  /** Set by the tracing channel: the error it rejected with. */
  error?: unknown;
}

/** The payload of `knex-dlock:release`. */
export interface ReleaseChannelContext extends LockChannelContext {
  /** How long the lock was held, in milliseconds. */
  readonly heldMs: number;
  /** `'released'`, `'not-held'` (the database said so) or `'closed'` (its connection was). */
  outcome?: 'released' | 'not-held' | 'closed';
  result?: unknown;
  error?: unknown;
}

/** The payload of `knex-dlock:lost`. */
export interface LostChannelMessage extends LockChannelContext {
  /** The `ERR_DLOCK_LOST` error that `lock.signal` aborts with. */
  readonly error: Error;
  /** How long the lock was held before it was lost, in milliseconds. */
  readonly heldMs: number;
}

export const acquireChannel = diagnostics.tracingChannel<unknown, AcquireChannelContext>(
  'knex-dlock:acquire',
);
export const releaseChannel = diagnostics.tracingChannel<unknown, ReleaseChannelContext>(
  'knex-dlock:release',
);
export const lostChannel = diagnostics.channel('knex-dlock:lost');

type AnyTracingChannel = typeof acquireChannel | typeof releaseChannel;

/** Whether anyone listens on `channel` (Node before 20.13 has no `hasSubscribers` on it). */
export function traced(channel: AnyTracingChannel): boolean {
  return (
    channel.start.hasSubscribers ||
    channel.end.hasSubscribers ||
    channel.asyncStart.hasSubscribers ||
    channel.asyncEnd.hasSubscribers ||
    channel.error.hasSubscribers
  );
}
