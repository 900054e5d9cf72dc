/** The signals that `run` passes on to its command; SIGHUP so that a closed terminal does too. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Catches the forwarded signals for as long as it is installed and hands each to the current
 * phase's handler (cancel the wait, or pass it to the command). Once disposed, the signals
 * regain their default effect, so a stuck release can still be interrupted.
 */
export class SignalRouter {
  #handler: (signal: NodeJS.Signals) => void = () => undefined;
  readonly #listeners = new Map<NodeJS.Signals, () => void>();

  constructor() {
    for (const signal of FORWARDED_SIGNALS) {
      const listener = () => this.#handler(signal);
      this.#listeners.set(signal, listener);
      process.on(signal, listener);
    }
  }

  route(handler: (signal: NodeJS.Signals) => void): void {
    this.#handler = handler;
  }

  dispose(): void {
    for (const [signal, listener] of this.#listeners) process.off(signal, listener);
    this.#listeners.clear();
  }
}
