import { ConnectionEvents, type ConnectionEmitter } from './connection-events.js';
import type { ConnectionLease, SqlSession } from './types.js';

/** How a lease gives its connection back: to its pool or owner, or by closing it for good. */
export interface GiveBack {
  release(): Promise<void>;
  /** Closes the connection; resolves false when it is not the library's to close. */
  destroy(): Promise<boolean>;
}

/** Connections owned by the caller are neither released nor closed by a lease. */
export const CALLER_OWNED: GiveBack = {
  release: async () => undefined,
  destroy: async () => false,
};

/** The socket under a connection, where the driver exposes it (pg's native client does not). */
export interface SocketLike {
  destroy(): void;
}

/**
 * A lease over one connection. A connection that failed, ended or was destroyed keeps a no-op
 * 'error' listener: its last errors can arrive after the lease ends, when nobody else listens.
 */
class Lease implements ConnectionLease {
  readonly #events: ConnectionEvents;
  #ended: Promise<boolean> | undefined;

  constructor(
    readonly connection: ConnectionEmitter,
    readonly session: SqlSession,
    readonly giveBack: GiveBack,
    readonly socket: () => SocketLike | undefined,
  ) {
    this.#events = ConnectionEvents.take(connection);
  }

  async release(): Promise<void> {
    await (this.#ended ??= this.#end(false));
  }

  destroy(): Promise<boolean> {
    return (this.#ended ??= this.#end(true));
  }

  watch(onLost: (cause: unknown) => void): () => void {
    return this.#events.watch(onLost);
  }

  async #end(destroy: boolean): Promise<boolean> {
    const events = this.#events;
    if (!destroy && !events.lost) {
      await this.giveBack.release();
      events.letGo();
      return false;
    }
    const destroying = this.giveBack.destroy();
    // A graceful close waits for a server that may never answer (a partition): cut it short.
    if (this.giveBack !== CALLER_OWNED) this.socket()?.destroy();
    const destroyed = await destroying;
    events.letGo();
    if (destroyed || events.lost) this.connection.on('error', () => undefined);
    return destroyed;
  }
}

/** Presents a driver's session differently to the locks, e.g. reporting each statement. */
export type SessionWrapper = (session: SqlSession) => SqlSession;

export const unwrapped: SessionWrapper = (session) => session;

export function leaseConnection(
  connection: ConnectionEmitter,
  session: SqlSession,
  giveBack: GiveBack,
  socket: () => SocketLike | undefined,
): ConnectionLease {
  return new Lease(connection, session, giveBack, socket);
}

/**
 * Connects a connection of the library's own and lends it through `lend`: releasing or
 * destroying the lease closes it (`close` never rejects).
 */
export async function ownConnection(
  connect: () => Promise<unknown>,
  close: () => Promise<void>,
  lend: (giveBack: GiveBack) => ConnectionLease,
): Promise<ConnectionLease> {
  await connect();
  return lend({ release: close, destroy: async () => (await close(), true) });
}
