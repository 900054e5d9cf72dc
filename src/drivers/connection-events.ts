/** The event surface that pg clients and mysql2 connections share. */
export interface ConnectionEmitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
}

/**
 * Listens for 'error' and 'end' on a connection while at least one lease uses it. The 'error'
 * listener is what keeps a failing pooled client (whose pool stopped listening while it is
 * checked out) from crashing the process; locks learn of the loss through `watch`. One listener
 * pair serves every lease of a connection, so that many locks stacked on one connection do not
 * pile up listeners.
 */
export class ConnectionEvents {
  #lostCause: unknown;
  #lost = false;
  #leases = 0;
  #subscribers = new Set<(cause: unknown) => void>();
  readonly #connection: ConnectionEmitter;
  readonly #onError = (err: unknown) => this.#fire(err);
  readonly #onEnd = () => this.#fire(new Error('The connection ended.'));

  private constructor(connection: ConnectionEmitter) {
    this.#connection = connection;
  }

  /** The events of `connection`, listened to until every lease that took them has let go. */
  static take(connection: ConnectionEmitter): ConnectionEvents {
    let events = listening.get(connection);
    if (!events) {
      events = new ConnectionEvents(connection);
      listening.set(connection, events);
      connection.on('error', events.#onError);
      connection.on('end', events.#onEnd);
    }
    events.#leases += 1;
    return events;
  }

  /** Whether the connection has failed or ended while it was listened to. */
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

  /** One lease lets go; the last one stops the listening, and the owner handles events again. */
  letGo(): void {
    this.#leases -= 1;
    if (this.#leases > 0) return;
    listening.delete(this.#connection);
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

const listening = new WeakMap<ConnectionEmitter, ConnectionEvents>();
