import type { HealthSchedule } from '../loss-detection.js';

/**
 * The health check of one connection while it holds locks: a ping every `interval` ms; a ping
 * that fails, or is unanswered `deadline` ms after it was sent, calls `onDead`. So a connection
 * that went silent is declared dead at most `interval + deadline` after its last answer.
 *
 * With a `stallLimit` (the server ends a session that sent nothing for that long), a check that
 * finds the last answer older than that declares the connection dead without asking: the process
 * was stalled (a blocked event loop, SIGSTOP) and the server may have freed its locks already.
 * {@link HealthCheck.stale} tells the same at any moment, so that a lock can refuse to report
 * itself held before the next timer has run.
 *
 * Its timers do not keep the process alive.
 */
export class HealthCheck {
  #answeredAt = performance.now();
  #pingDeadline: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly ping: () => Promise<void>,
    readonly schedule: HealthSchedule,
    readonly stallLimit: number | undefined,
    readonly onDead: (cause: unknown) => void,
  ) {
    this.#timer = setInterval(() => this.#tick(), schedule.interval);
    this.#timer.unref();
  }

  /** Whether the last answer is so old that the server may have ended the session. */
  stale(now = performance.now()): boolean {
    return this.stallLimit !== undefined && now - this.#answeredAt >= this.stallLimit;
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#pingDeadline);
  }

  /**
   * Another statement on the connection was answered: the connection is alive, so a ping queued
   * behind many statements is not given up on while they are being answered.
   */
  heard(): void {
    this.#answeredAt = performance.now();
  }

  #tick(): void {
    if (this.#stopped) return;
    const now = performance.now();
    if (this.stale(now)) {
      this.#dead(
        new Error(
          `The process did not run its health check for ${Math.round(now - this.#answeredAt)} ms, ` +
            `more than the ${this.stallLimit} ms after which the server ends a silent session.`,
        ),
      );
      return;
    }
    if (this.#pingDeadline !== undefined) return;
    const sentAt = now;
    this.#armDeadline(sentAt);
    this.ping().then(
      () => {
        clearTimeout(this.#pingDeadline);
        this.#pingDeadline = undefined;
        this.#answeredAt = Math.max(this.#answeredAt, sentAt);
      },
      (err: unknown) => this.#dead(err),
    );
  }

  /** Gives the ping sent at `since` until the deadline, and more while other answers come. */
  #armDeadline(since: number): void {
    const { deadline } = this.schedule;
    this.#pingDeadline = setTimeout(() => {
      if (this.#answeredAt >= since) {
        this.#armDeadline(performance.now());
        return;
      }
      this.#dead(new Error(`The connection did not answer a health check within ${deadline} ms.`));
    }, deadline);
    this.#pingDeadline.unref();
  }

  #dead(cause: unknown): void {
    if (this.#stopped) return;
    this.stop();
    this.onDead(cause);
  }
}
