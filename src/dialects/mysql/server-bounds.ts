import type { ServerBounds } from '../dialect.js';

/**
 * MySQL / MariaDB end a session that sent no command for `wait_timeout` seconds, which any user
 * may set for its own session. So a partitioned holder's session ends `wait_timeout` after its
 * last health check, and a healthy holder keeps it by pinging well inside that. A holder
 * stalled for longer than `wait_timeout` loses its session too: the stall limit.
 */
function waitTimeoutSeconds(free: number): number {
  // The server counts whole seconds and may end the session up to about one second late.
  return Math.max(1, Math.floor(free / 1_000) - 1);
}

export const mysqlServerBounds: ServerBounds = {
  defaultFree: 31_000,
  soonest: (free) => waitTimeoutSeconds(free) * 1_000,
  stallLimit: (free) => waitTimeoutSeconds(free) * 1_000,
  needsHealthCheck: true,
  async apply(session, free) {
    await session.query('SET SESSION wait_timeout = ?', [waitTimeoutSeconds(free)]);
  },
};
