/** How a lock tells its caller that its hold was lost: `lock.signal` and `onLost`. */
import type { LockLostError } from '../errors.js';

export class LossNotice {
  /** Made on first use: most holds never look at their signal. */
  #controller: AbortController | undefined;

  constructor(readonly onLost: ((error: LockLostError) => void) | undefined) {}

  /** The signal of the current hold; it aborts with the loss's error. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  /** A new hold begins: its signal is a fresh one. */
  reset(): void {
    this.#controller = undefined;
  }

  /** The hold was lost: aborts its signal and calls `onLost`. */
  report(error: LockLostError): void {
    this.#controller ??= new AbortController();
    this.#controller.abort(error);
    this.onLost?.(error);
  }
}
