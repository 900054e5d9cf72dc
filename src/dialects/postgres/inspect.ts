import type { Row } from '../../drivers/types.js';
import { numberOrNull, textOrNull, type Inspection, type LockHolder } from '../inspection.js';

/**
 * Advisory locks on an int8 key in the current database, granted (holders) or not (waiters),
 * with the session's pg_stat_activity row. pg_locks splits the key into classid (high 32 bits) and objid (low 32
 * bits) with objsubid = 1; advisory locks are per database, so other databases' rows on the
 * same numbers are different locks.
 */
const HOLDERS_SQL = `
  SELECT l.pid, l.mode, l.granted, a.usename, a.datname, a.application_name,
         host(a.client_addr) AS client_host, a.client_port, a.backend_start, a.state,
         a.state_change,
         CASE WHEN a.state LIKE 'idle%'
              THEN EXTRACT(EPOCH FROM clock_timestamp() - a.state_change)::float8 * 1000
         END AS idle_ms
    FROM pg_locks l
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'advisory' AND l.objsubid = 1
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.classid::int8 = $1 AND l.objid::int8 = $2
   ORDER BY l.mode, l.pid`;

/**
 * A holder's pid for each key of an array, in order; the keys travel as two int8 array literals
 * (high and low 32 bits), built from integers, bound as one parameter each.
 */
const HOLDER_IDS_SQL = `
  SELECT k.i, min(l.pid) AS pid
    FROM unnest($1::text::int8[], $2::text::int8[]) WITH ORDINALITY AS k(high, low, i)
    LEFT JOIN pg_locks l
      ON l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.classid::int8 = k.high AND l.objid::int8 = k.low
   GROUP BY k.i
   ORDER BY k.i`;

/** pg_locks's two halves of an int8 key, as unsigned decimals. */
function halves(key: bigint): [string, string] {
  const unsigned = BigInt.asUintN(64, key);
  return [(unsigned >> 32n).toString(), (unsigned & 0xffffffffn).toString()];
}

function clientAddress(row: Row): string | null {
  const host = textOrNull(row.client_host);
  const port = numberOrNull(row.client_port);
  // A Unix-socket client has no address and port -1.
  if (host === null) return port === -1 ? 'local socket' : null;
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === null ? shown : `${shown}:${port}`;
}

function dateOrNull(value: unknown): Date | null {
  if (value instanceof Date) return value;
  if (typeof value === 'string') return new Date(value);
  return null;
}

function idleMs(value: unknown): number | null {
  const ms = numberOrNull(value);
  return ms === null ? null : Math.max(0, Math.round(ms));
}

function toHolder(row: Row): LockHolder {
  return {
    mode: row.mode === 'ShareLock' ? 'shared' : 'exclusive',
    sessionId: numberOrNull(row.pid),
    user: textOrNull(row.usename),
    database: textOrNull(row.datname),
    applicationName: textOrNull(row.application_name),
    clientAddress: clientAddress(row),
    connectedAt: dateOrNull(row.backend_start),
    state: textOrNull(row.state),
    stateSince: dateOrNull(row.state_change),
    idleFor: idleMs(row.idle_ms),
  };
}

/** Who holds and who waits for a PostgreSQL advisory lock, from pg_locks and pg_stat_activity. */
export const postgresInspection: Inspection<bigint> = {
  async sessions(session, key) {
    const [high, low] = halves(key);
    const [rows = []] = await session.query(HOLDERS_SQL, [high, low]);
    return {
      holders: rows.filter((row) => row.granted === true).map(toHolder),
      waiters: rows.filter((row) => row.granted !== true).map(toHolder),
    };
  },

  async holderIds(session, keys) {
    if (keys.length === 0) return [];
    const split = keys.map(halves);
    const literal = (part: 0 | 1) => `{${split.map((pair) => pair[part]).join(',')}}`;
    const [rows = []] = await session.query(HOLDER_IDS_SQL, [literal(0), literal(1)]);
    return rows.map((row) => numberOrNull(row.pid));
  },
};
