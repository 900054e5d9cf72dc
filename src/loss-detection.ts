import { InvalidOptionError } from './errors.js';
import { describe } from './keys.js';

/**
 * Bounds on a silent fault: a holder whose network goes quiet learns that its lock is lost
 * within `detect`, and the server frees the key no later than `free` after the holder's last
 * answered health check, and never before the holder has learned it.
 */
export interface LossDetection {
  /**
   * Milliseconds within which the holder declares a held lock lost when its connection stops
   * answering: the health check pings at most once a second and gives up on a ping after the
   * rest of this time. Default 2 500.
   */
  detect?: number;
  /**
   * Milliseconds after the holder's last answered health check by which the server drops the
   * silent session, and with it the lock. Default: PostgreSQL 12 000 (`tcp_user_timeout` and
   * TCP keepalives), MySQL / MariaDB 31 000 (`wait_timeout`). It must leave the server at least
   * one second more than `detect`.
   */
  free?: number;
}

/** How a held lock's connection is checked: a ping every `interval` ms, each given `deadline`. */
export interface HealthSchedule {
  readonly interval: number;
  readonly deadline: number;
}

/** The default time within which a holder learns of a silent loss. */
export const DEFAULT_DETECT_MS = 2_500;
/** The health check pings no more often than this, however short `detect` is, unless asked. */
const MAX_PING_RATE_MS = 1_000;
/** The least time a server bound must leave beyond `detect`. */
export const MIN_MARGIN_MS = 1_000;
const MAX_MS = 2 ** 31 - 1;

function checkMs(value: unknown, name: string, min: number): void {
  if (value !== undefined && !(typeof value === 'number' && value >= min && value <= MAX_MS)) {
    throw new InvalidOptionError(
      `Option "lossDetection.${name}" must be a number of milliseconds from ${min} to ${MAX_MS}, ` +
        `got ${describe(value)}.`,
    );
  }
}

/** Validates a `lossDetection` option (an object, or `false`) before anything is sent. */
export function checkLossDetection(value: unknown): void {
  if (value === undefined || value === false) return;
  if (typeof value !== 'object' || value === null) {
    throw new InvalidOptionError(
      `Option "lossDetection" must be an object such as { detect: 2_500 }, or false, got ${describe(value)}.`,
    );
  }
  for (const name of Object.keys(value)) {
    if (name !== 'detect' && name !== 'free') {
      throw new InvalidOptionError(
        `Unknown option "lossDetection.${name}"; expected detect or free (milliseconds).`,
      );
    }
  }
  const { detect, free } = value as LossDetection;
  checkMs(detect, 'detect', 100);
  checkMs(free, 'free', 100 + MIN_MARGIN_MS);
}

/** The health check that meets `detect`: at most one ping a second, each given the rest. */
export function scheduleFor(detect: number): HealthSchedule {
  const interval = Math.min(MAX_PING_RATE_MS, detect / 2);
  return { interval, deadline: detect - interval };
}

/** The schedule of the older `keepalive` option: a ping every `every` ms, each given as long. */
export function keepaliveSchedule(every: number): HealthSchedule {
  return { interval: every, deadline: every };
}

/** The longest a schedule may take to declare a silent connection lost. */
export function detectionOf(schedule: HealthSchedule): number {
  return schedule.interval + schedule.deadline;
}
