import type { Dialect } from '../dialects/dialect.js';
import { InvalidOptionError } from '../errors.js';
import {
  DEFAULT_DETECT_MS,
  detectionOf,
  keepaliveSchedule,
  MIN_MARGIN_MS,
  scheduleFor,
  type HealthSchedule,
  type LossDetection,
} from '../loss-detection.js';

/** What a lock does about silent faults: its health check and the server bound on its session. */
export interface LossPolicy {
  readonly health: HealthSchedule | undefined;
  readonly serverBound: number | undefined;
}

/** Where a lock's connection comes from, as far as silent faults are concerned. */
export interface LossContext {
  /** The connection is the library's own (multiplexed or dedicated): protected by default. */
  readonly owned: boolean;
  /** It is one of the target's shared lock connections, whose settings the target owns. */
  readonly multiplexed: boolean;
  /** The target's setting from `configureLockConnections`. */
  readonly target: LossDetection | false | undefined;
}

const NONE: LossPolicy = { health: undefined, serverBound: undefined };
/** Schedules are shared by identity, so that a connection counts a few distinct ones. */
const schedules = new Map<string, HealthSchedule>();

function shared(schedule: HealthSchedule): HealthSchedule {
  const name = `${schedule.interval}/${schedule.deadline}`;
  let known = schedules.get(name);
  if (!known) schedules.set(name, (known = schedule));
  return known;
}

/**
 * The one place that turns `lossDetection` and `keepalive` into a lock's health check and server
 * bound, and checks that the holder learns of a loss at least a margin before the server frees
 * the key.
 */
export function lossPolicy(
  dialect: Dialect<unknown>,
  context: LossContext,
  lock: LossDetection | false | undefined,
  keepalive: number | false | undefined,
): LossPolicy {
  if (lock !== undefined && lock !== false && lock.free !== undefined && context.multiplexed) {
    throw new InvalidOptionError(
      "lossDetection.free applies to all of a target's lock connections at once: set it with " +
        'configureLockConnections(target, { lossDetection: { free } }), or use ' +
        "connection: 'dedicated' for a lock of its own.",
    );
  }
  const target = context.owned ? (context.target ?? {}) : undefined;
  const chosen = lock === false || target === false ? false : { ...target, ...lock };
  const wanted = lock !== undefined || context.owned;
  if (!wanted || chosen === false) {
    if (typeof keepalive !== 'number') return NONE;
    return { health: shared(keepaliveSchedule(keepalive)), serverBound: undefined };
  }
  const bounds = dialect.serverBounds;
  const free = chosen.free ?? bounds.defaultFree;
  const detect = chosen.detect ?? DEFAULT_DETECT_MS;
  const health =
    keepalive === false
      ? undefined
      : shared(keepalive === undefined ? scheduleFor(detect) : keepaliveSchedule(keepalive));
  // Without health checks, MySQL's wait_timeout would end a healthy holder that sends nothing.
  if (health === undefined && bounds.needsHealthCheck) {
    if (context.multiplexed) {
      throw new InvalidOptionError(
        `keepalive: false on ${dialect.title} would let the server end the shared lock ` +
          'connections that this lock holds on without a word: turn loss detection off for ' +
          "all of them with configureLockConnections(target, { lossDetection: false }), or use connection: 'dedicated'.",
      );
    }
    return NONE;
  }
  const learns = health ? detectionOf(health) : detect;
  if (learns + MIN_MARGIN_MS > bounds.soonest(free)) {
    throw new InvalidOptionError(
      `With a health check that declares a silent connection lost within ${learns} ms, ` +
        `${dialect.title} must not free the key before ${learns + MIN_MARGIN_MS} ms, but ` +
        `lossDetection.free ${free} lets it free the key after ${bounds.soonest(free)} ms: ` +
        'raise free, or lower detect / keepalive.',
    );
  }
  return { health, serverBound: free };
}
