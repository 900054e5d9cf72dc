/**
 * What one library cycle sends: its driver calls, recorded so that a diagnostic contender can
 * replay them by hand, and its wire traffic (round trips, statements, parses) as the test
 * suite's counter sees it.
 *
 * The calls are recorded on the drivers' prototypes, so that the library's own lock
 * connections (opened beside a pool) are recorded as well as a caller's connection.
 */
import mysql from 'mysql2';
import pg from 'pg';
import { countTraffic, type TrafficCounts } from '../test/support/counting.js';
import type { DriverCall } from './raw.js';

/** The prototypes the library's connections run their statements through. */
const QUERYABLE: readonly { proto: object; methods: readonly ('query' | 'execute')[] }[] = [
  { proto: pg.Client.prototype, methods: ['query'] },
  { proto: mysql.Connection.prototype, methods: ['query', 'execute'] },
];

/** A driver call's arguments (pg: text or config; mysql2: text or options) as a DriverCall. */
function driverCall(method: 'query' | 'execute', args: readonly unknown[]): DriverCall {
  const [first, second] = args;
  if (typeof first === 'string') {
    return { method, text: first, values: Array.isArray(second) ? [...second] : undefined };
  }
  const config = first as { text?: string; sql?: string; name?: string; values?: unknown[] };
  const values = Array.isArray(second) ? second : config.values;
  return {
    method,
    text: String(config.text ?? config.sql),
    values: values ? [...values] : undefined,
    name: config.name,
  };
}

interface Recorder {
  readonly calls: DriverCall[];
  /** Only calls made while this is on are kept. */
  recording: boolean;
  /** Puts the drivers' methods back. */
  stop(): void;
}

/** Starts recording the driver calls of every pg client and mysql2 connection. */
function recordDriverCalls(): Recorder {
  const restores: (() => void)[] = [];
  const recorder: Recorder = {
    calls: [],
    recording: false,
    stop: () => restores.splice(0).forEach((restore) => restore()),
  };
  for (const { proto, methods } of QUERYABLE) {
    const target = proto as Record<string, unknown>;
    for (const method of methods) {
      const original = target[method] as (...args: unknown[]) => unknown;
      const hadOwn = Object.hasOwn(target, method);
      target[method] = function (this: unknown, ...args: unknown[]) {
        if (recorder.recording) recorder.calls.push(driverCall(method, args));
        return original.apply(this, args);
      };
      restores.push(() => {
        if (hadOwn) target[method] = original;
        else delete target[method];
      });
    }
  }
  return recorder;
}

export interface RecordedCycle {
  /**
   * The warm-up cycles' calls: they also set the session up (PostgreSQL's pg_temp wait
   * function, created by a lock connection's first wait).
   */
  readonly setup: readonly DriverCall[];
  /** A steady-state cycle's calls. */
  readonly calls: readonly DriverCall[];
  /** A steady-state cycle's traffic. */
  readonly counts: TrafficCounts;
}

/**
 * Runs `cycle` `warmup` times (connecting, defining, preparing: a multiplexed target's first
 * cycle tries, its second defines the wait function, its third prepares the call), then once
 * more, and says what they sent. `counted` is what the traffic counter watches: the target, or
 * a transaction's connection. Call it before the target's first lock, so that the library's own
 * lock connections are watched from their start.
 */
export async function recordCycle(
  counted: object,
  cycle: () => Promise<void>,
  warmup = 3,
): Promise<RecordedCycle> {
  // Recording first: the counter then wraps the recording methods, and both see every call.
  const recorder = recordDriverCalls();
  try {
    const counter = countTraffic(counted);
    try {
      recorder.recording = true;
      for (let i = 0; i < warmup; i += 1) await cycle();
      const setup = recorder.calls.splice(0);
      const { counts } = await counter.measure(cycle, 0);
      recorder.recording = false;
      return { setup, calls: recorder.calls, counts };
    } finally {
      counter.detach();
    }
  } finally {
    recorder.stop();
  }
}

/** "2 round trips, 0 parses": what a recorded cycle cost the server. */
export function describeCounts(counts: TrafficCounts): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return `${plural(counts.roundTrips, 'round trip')}, ${plural(counts.parses, 'parse')}`;
}
