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

/**
 * A lease over one connection. A connection that failed, ended or was destroyed keeps a no-op
 * 'error' listener: its last errors can arrive after the lease ends, when nobody else listens.
 */
export function leaseConnection(
  connection: ConnectionEmitter,
  session: SqlSession,
  giveBack: GiveBack,
  closeSocket: () => void,
): ConnectionLease {
  const events = ConnectionEvents.take(connection);
  let ended: Promise<boolean> | undefined;
  const end = async (destroy: boolean): Promise<boolean> => {
    const dead = destroy || events.lost;
    if (!dead) {
      await giveBack.release();
      events.letGo();
      return false;
    }
    const destroying = giveBack.destroy();
    // A graceful close waits for a server that may never answer (a partition): cut it short.
    if (giveBack !== CALLER_OWNED) closeSocket();
    const destroyed = await destroying;
    events.letGo();
    if (destroyed || events.lost) connection.on('error', () => undefined);
    return destroyed;
  };
  return {
    session,
    release: async () => void (await (ended ??= end(false))),
    destroy: () => (ended ??= end(true)),
    watch: (onLost) => events.watch(onLost),
  };
}
