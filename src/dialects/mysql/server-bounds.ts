import type { SqlSession } from '../../drivers/types.js';
import type { ServerLocality } from '../../errors.js';
import { errorNumber, firstRowValue, type ServerBounds, type SessionFacts } from '../dialect.js';

/**
 * A named lock is the one server's: a replica's (`read_only` on, as replicas are run) excludes
 * nobody on the source, a Galera node's nobody on the other nodes. MySQL builds without wsrep
 * know no `wsrep_on` (ER_UNKNOWN_SYSTEM_VARIABLE).
 */
const LOCALITY_SQL = 'SELECT @@global.read_only AS ro, @@global.wsrep_on AS wsrep';
const READ_ONLY_SQL = 'SELECT @@global.read_only AS ro';
const ER_UNKNOWN_SYSTEM_VARIABLE = 1193;

async function factsOf(session: SqlSession): Promise<SessionFacts> {
  return { locality: await localityOf(session), pooled: false };
}

async function localityOf(session: SqlSession): Promise<ServerLocality | undefined> {
  const [rows] = await session.query(LOCALITY_SQL).catch((err: unknown) => {
    if (errorNumber(err) !== ER_UNKNOWN_SYSTEM_VARIABLE) throw err;
    return session.query(READ_ONLY_SQL);
  });
  if (isOn(firstRowValue(rows, 'wsrep'))) return 'galera';
  return isOn(firstRowValue(rows, 'ro')) ? 'read-only' : undefined;
}

function isOn(value: unknown): boolean {
  return value !== undefined && value !== null && Number(value) === 1;
}

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
  async prepare(session, free) {
    if (free !== undefined) {
      await session.query('SET SESSION wait_timeout = ?', [waitTimeoutSeconds(free)]);
    }
    return factsOf(session);
  },
};
