import { InvalidOptionError } from '../errors.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Milliseconds from a duration such as `500ms`, `30s`, `1.5s`, `5m` or `1h`. A bare `0` is
 * accepted; any other bare number is refused, because seconds and milliseconds are both
 * plausible readings and guessing wrong turns a 30 s wait into a 30 ms one.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (trimmed === '0') return 0;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/i.exec(trimmed);
  if (!match) {
    throw new InvalidOptionError(
      `"${text}" is not a duration: write a number with a unit, e.g. 500ms, 30s, 5m or 1h.`,
    );
  }
  const [, amount = '', unit = ''] = match;
  const ms = Number(amount) * (UNIT_MS[unit.toLowerCase()] ?? Number.NaN);
  if (!Number.isFinite(ms)) {
    throw new InvalidOptionError(`"${text}" is too long a duration.`);
  }
  return Math.round(ms);
}

/** A duration for messages: `300 ms`, `30 s`, `5 min`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 60_000 || ms % 60_000 !== 0) return `${ms / 1_000} s`;
  return `${ms / 60_000} min`;
}
