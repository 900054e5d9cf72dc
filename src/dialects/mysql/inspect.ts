import type { Row } from '../../drivers/types.js';
import { numberOrNull, textOrNull, type Inspection, type LockHolder } from '../inspection.js';

/**
 * The holder of a named lock and its PROCESSLIST row, in one statement so that both describe
 * the same moment. IS_USED_LOCK sees every session's locks; PROCESSLIST shows other users'
 * sessions only with the PROCESS privilege, so the row may be missing (fields then null).
 */
const HOLDER_SQL = `
  SELECT h.id, p.USER AS user, p.HOST AS host, p.DB AS db, p.COMMAND AS command,
         p.TIME AS seconds
    FROM (SELECT IS_USED_LOCK(?) AS id) h
    LEFT JOIN information_schema.PROCESSLIST p ON p.ID = h.id`;

/**
 * Sessions waiting in GET_LOCK for the name: PROCESSLIST state `User lock`, with the quoted name
 * in the statement, as clients that interpolate their parameters send it (the library among
 * them); a wait sent as a prepared statement shows `?` and cannot be told. Needs the PROCESS
 * privilege to see other users' sessions.
 */
const WAITERS_SQL = `
  SELECT p.ID AS id, p.USER AS user, p.HOST AS host, p.DB AS db, p.STATE AS command,
         p.TIME AS seconds
    FROM information_schema.PROCESSLIST p
   WHERE p.STATE = 'User lock' AND p.ID <> CONNECTION_ID() AND LOCATE(QUOTE(?), p.INFO) > 0
   ORDER BY p.TIME DESC, p.ID`;

function toHolder(row: Row, now: number): LockHolder {
  const seconds = numberOrNull(row.seconds);
  return {
    mode: 'exclusive',
    sessionId: numberOrNull(row.id),
    user: textOrNull(row.user),
    database: textOrNull(row.db),
    applicationName: null,
    clientAddress: textOrNull(row.host),
    connectedAt: null,
    state: textOrNull(row.command),
    // TIME counts seconds in the current state; subtracting here avoids server time zones.
    stateSince: seconds === null ? null : new Date(now - seconds * 1_000),
    // PROCESSLIST counts whole seconds (MariaDB's TIME_MS is missing on MySQL).
    idleFor: row.command === 'Sleep' && seconds !== null ? seconds * 1_000 : null,
  };
}

/**
 * Who holds a MySQL / MariaDB named lock, from IS_USED_LOCK and information_schema.PROCESSLIST,
 * and who waits for it, from PROCESSLIST.
 */
export const mysqlInspection: Inspection<string> = {
  async sessions(session, name) {
    const [rows = []] = await session.query(HOLDER_SQL, [name]);
    const [waiting = []] = await session.query(WAITERS_SQL, [name]);
    const now = Date.now();
    return {
      holders: rows
        .filter((row) => row.id !== null && row.id !== undefined)
        .map((row) => toHolder(row, now)),
      waiters: waiting.map((row) => toHolder(row, now)),
    };
  },

  async holderIds(session, names) {
    if (names.length === 0) return [];
    // One IS_USED_LOCK per name, each bound; the aliases only number the columns.
    const columns = names.map((_, i) => `IS_USED_LOCK(?) AS h${i}`).join(', ');
    const [rows = []] = await session.query(`SELECT ${columns}`, names);
    const row = rows[0] ?? {};
    return names.map((_, i) => numberOrNull(row[`h${i}`]));
  },
};
