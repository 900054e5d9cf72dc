/** The event surface that pg clients and mysql2 connections share. */
export interface ConnectionEmitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
}

/**
 * Listens for 'error' and 'end' on a connection for as long as a lease lasts. The 'error'
 * listener is what keeps a failing pooled client (whose pool stopped listening while it is
 * checked out) from crashing the process; the lock learns of the loss through `watch`.
 */
export class ConnectionEvents {
  #lostCause: unknown;
  #lost = false;
  #subscribers = new Set<(cause: unknown) => void>();
  readonly #connection: ConnectionEmitter;
  readonly #onError = (err: unknown) => this.#fire(err);
  readonly #onEnd = () => this.#fire(new Error('The connection ended.'));

  constructor(connection: ConnectionEmitter) {
    this.#connection = connection;
    connection.on('error', this.#onError);
    connection.on('end', this.#onEnd);
  }

  /** Whether the connection has failed or ended since the lease began. */
  get lost(): boolean {
    return this.#lost;
  }

  watch(onLost: (cause: unknown) => void): () => void {
    if (this.#lost) {
      queueMicrotask(() => onLost(this.#lostCause));
      return () => undefined;
    }
    this.#subscribers.add(onLost);
    return () => this.#subscribers.delete(onLost);
  }

  /** Stops listening; the connection's owner handles its events again. */
  detach(): void {
    this.#connection.removeListener('error', this.#onError);
    this.#connection.removeListener('end', this.#onEnd);
    this.#subscribers.clear();
  }

  #fire(cause: unknown): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#lostCause = cause;
    for (const subscriber of [...this.#subscribers]) subscriber(cause);
    this.#subscribers.clear();
  }
}
