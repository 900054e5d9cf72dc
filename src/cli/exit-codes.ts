import { constants } from 'node:os';

const osSignals: Partial<Record<NodeJS.Signals, number>> = constants.signals;

/** knex-dlock's own exit codes; anything else is the command's. Documented in the README. */
export const EXIT = {
  /** Bad arguments or setup: unknown option, missing key or URL, driver not installed. */
  usage: 64,
  /** The database could not be reached, or failed while taking or inspecting the lock. */
  unavailable: 69,
  /** The lock was held elsewhere: timed out, or busy with --no-wait (see --conflict-exit-code). */
  conflict: 75,
  /** The lock was lost while the command ran, and the command was stopped. */
  lost: 76,
  /** The command was found but could not be executed. */
  cannotExecute: 126,
  /** The command was not found. */
  notFound: 127,
} as const;

/** 128 + the signal's number, as shells report a process that a signal ended. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (osSignals[signal] ?? 0);
}
