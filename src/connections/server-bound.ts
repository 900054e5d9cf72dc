import type { Dialect } from '../dialects/dialect.js';
import type { SqlSession } from '../drivers/types.js';

/** The `free` (ms) set on a session by {@link boundSession}, kept for its lifetime. */
const APPLIED = Symbol('server bound');

/**
 * Sets the server's bound on a silent peer (`free` ms) on `session` once: one round trip the
 * first time a lock runs on the session, none after.
 */
export async function boundSession(
  session: SqlSession,
  dialect: Dialect<unknown>,
  free: number,
): Promise<void> {
  if (session.memo.get(APPLIED) === free) return;
  await dialect.serverBounds.apply(session, free);
  session.memo.set(APPLIED, free);
}

/** How long a stalled holder keeps `session` on the server; undefined when not bounded so. */
export function stallLimitOf(session: SqlSession, dialect: Dialect<unknown>): number | undefined {
  const free = session.memo.get(APPLIED);
  return typeof free === 'number' ? dialect.serverBounds.stallLimit(free) : undefined;
}
