/**
 * PostgreSQL sessions behind a pooler (PgBouncer, Supavisor, RDS Proxy). The pooler gives the
 * client a process id of its own, so the backend to cancel a wait on is learnt in the statement
 * that pins one: its pid, read inside the pinning transaction, is the backend's for as long as
 * the transaction lasts. Outside a pin there is no backend to name, and nothing is cancelled.
 */
import type { SqlSession } from '../../drivers/types.js';
import { firstRowValue, type Pinning } from '../dialect.js';
import { isPooled } from './statements.js';

const BACKEND_PID = Symbol('postgres pinned backend pid');
const FOUND_PID = Symbol('postgres first backend pid');

export const postgresPinning: Pinning = {
  async begin(session) {
    const results = await session.query('BEGIN; SELECT pg_backend_pid() AS pid');
    const pid = Number(firstRowValue(results[results.length - 1], 'pid'));
    if (Number.isInteger(pid)) session.memo.set(BACKEND_PID, pid);
  },
  async end(session) {
    session.memo.delete(BACKEND_PID);
    await session.query('COMMIT');
  },
  stay(session) {
    const found = session.memo.get(FOUND_PID);
    if (typeof found === 'number') session.memo.set(BACKEND_PID, found);
  },
};

/** Records the backend pid that the first statement of a pooled session ran on. */
export function noteFoundBackend(session: SqlSession, pid: number): void {
  session.memo.set(FOUND_PID, pid);
}

/** The backend running `session`'s statements now, where it can be named. */
export function backendPidOf(session: SqlSession): number | undefined {
  if (!isPooled(session)) return session.serverId;
  return session.memo.get(BACKEND_PID) as number | undefined;
}
