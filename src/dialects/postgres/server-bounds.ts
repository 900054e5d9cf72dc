import type { Row, SqlSession } from '../../drivers/types.js';
import { firstRowValue, type ServerBounds, type SessionFacts } from '../dialect.js';
import { noteFoundBackend } from './pinning.js';
import { markPooled } from './statements.js';

/**
 * PostgreSQL drops a silent peer through the TCP settings of its session, which any user may set
 * (context `user`). `tcp_user_timeout` ends the connection once the peer has acknowledged
 * nothing for that long; keepalive probes from the first idle second on make sure there is
 * something to acknowledge, so an idle session is covered as well as one with an answer in
 * flight. A holder that is stalled but connected keeps its lock: its kernel still acknowledges.
 * `client_connection_check_interval` makes a backend that is waiting for a lock notice its peer
 * is gone and leave the queue.
 */
const KEEPALIVE_IDLE_S = 1;
const KEEPALIVE_INTERVAL_S = 1;
/** The kernel aborts at the first keepalive tick past the user timeout: up to one interval late. */
const TICK_MS = KEEPALIVE_INTERVAL_S * 1_000;

/**
 * A standby's advisory locks exclude only its own sessions: the primary never sees them. A
 * pooler (PgBouncer, Supavisor, RDS Proxy) hands the client a process id of its own, so a
 * backend pid that differs from the one of the handshake tells that a pooler stands between.
 */
const FACTS_SQL = 'SELECT pg_is_in_recovery() AS in_recovery, pg_backend_pid() AS pid';

/**
 * The bounds go only on a backend of the client's own (`$6`, the handshake's process id; NULL
 * where the driver does not know it). Behind a pooler they would land on a server session that
 * other clients share, and bound only the pooler's link, not this client's.
 */
const BOUNDS_SQL =
  `${FACTS_SQL}, CASE WHEN $6::int IS NULL OR $6::int = pg_backend_pid() THEN ` +
  "set_config('tcp_user_timeout', $1, false) || " +
  "set_config('tcp_keepalives_idle', $2, false) || " +
  "set_config('tcp_keepalives_interval', $3, false) || " +
  "set_config('tcp_keepalives_count', $4, false) || " +
  "set_config('client_connection_check_interval', $5, false) END AS bounds";

export const postgresServerBounds: ServerBounds = {
  defaultFree: 12_000,
  soonest: (free) => free - TICK_MS,
  stallLimit: () => undefined,
  needsHealthCheck: false,
  async prepare(session, free) {
    if (free === undefined) return factsOf(session, await session.query(FACTS_SQL, []));
    const userTimeout = free - TICK_MS;
    // Where the kernel has no TCP_USER_TIMEOUT, the probe count alone ends the session in time.
    const count = Math.max(1, Math.floor(userTimeout / TICK_MS) - KEEPALIVE_IDLE_S);
    const rows = await session.query(BOUNDS_SQL, [
      String(Math.round(userTimeout)),
      String(KEEPALIVE_IDLE_S),
      String(KEEPALIVE_INTERVAL_S),
      String(count),
      String(TICK_MS),
      session.serverId ?? null,
    ]);
    return factsOf(session, rows);
  },
};

function factsOf(session: SqlSession, [rows]: Row[][]): SessionFacts {
  const locality = firstRowValue(rows, 'in_recovery') === true ? 'standby' : undefined;
  // pg's native client does not expose the handshake's process id: no pooler can be told there.
  const handshake = session.serverId;
  const pid = Number(firstRowValue(rows, 'pid'));
  const pooled = handshake !== undefined && pid !== handshake;
  if (pooled) {
    markPooled(session);
    noteFoundBackend(session, pid);
  }
  return { locality, pooled };
}
