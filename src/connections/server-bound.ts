import type { Dialect } from '../dialects/dialect.js';
import type { SqlSession } from '../drivers/types.js';
import { FencingUnavailableError, ServerLocalLockError, type ServerLocality } from '../errors.js';
import { notePooled } from './pinned.js';
import type { LockRequest } from './strategy.js';

/** The `free` (ms) set on a session by {@link prepareSession}, kept for its lifetime. */
const APPLIED = Symbol('server bound');
/** What makes the session's server's locks local to it: a ServerLocality, or null for nothing. */
const LOCALITY = Symbol('server locality');

/** The preparation running on a session, which concurrent first locks share. */
const PREPARING = Symbol('server bound being set');

/**
 * Readies `session` for `request`'s lock: sets the server's bound on a silent peer, and finds
 * out whether the server's locks would exclude only its own sessions (a standby, a replica, a
 * Galera node). One round trip the first time a lock runs on the session (concurrent first
 * locks share it), and again only when a later lock asks for another bound; none after, and
 * then no promise either: undefined. Throws, before anything is locked, where the lock would
 * exclude nobody it is meant to.
 */
export function prepareSession<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
): Promise<void> | undefined {
  const free = request.serverBound;
  const applied = session.memo.get(APPLIED);
  if (session.memo.has(LOCALITY) && (free === undefined || applied === free)) {
    const locality = session.memo.get(LOCALITY) as ServerLocality | null;
    if (locality !== null) checkLocality(locality, request);
    return undefined;
  }
  const running = session.memo.get(PREPARING) as Promise<void> | undefined;
  if (running) return running.then(() => prepareSession(session, request));
  const preparing = prepare(session, request, free === applied ? undefined : free).finally(() =>
    session.memo.delete(PREPARING),
  );
  session.memo.set(PREPARING, preparing);
  return preparing.then(() => prepareSession(session, request));
}

async function prepare<Key>(
  session: SqlSession,
  request: LockRequest<Key>,
  free: number | undefined,
): Promise<void> {
  const dialect = request.dialect as Dialect<unknown>;
  const facts = await dialect.serverBounds.prepare(session, free);
  session.memo.set(LOCALITY, facts.locality ?? null);
  notePooled(session, facts.pooled);
  if (free !== undefined) session.memo.set(APPLIED, free);
}

function checkLocality<Key>(locality: ServerLocality, request: LockRequest<Key>): void {
  if (!request.serverLocal) {
    throw new ServerLocalLockError(locality, localMessage(locality, request));
  }
  if (locality === 'standby' && request.mode.fencing) {
    throw new FencingUnavailableError(
      `Fencing tokens for ${request.label} come from the primary: a PostgreSQL standby cannot ` +
        'hand them out, and tokens of its own would repeat those of the primary. Take fenced ' +
        'locks on the primary.',
    );
  }
}

const WHY: Record<ServerLocality, string> = {
  standby:
    'is a PostgreSQL standby (in recovery): its advisory locks exclude only its own sessions, ' +
    'never those on the primary or on other standbys',
  'read-only':
    'has read_only on, as a replica has: its named locks exclude only its own sessions, never ' +
    'those on the source or on other replicas',
  galera:
    'is a MariaDB Galera node (wsrep_on): named locks are not replicated, so they exclude only ' +
    "that node's sessions, never those on the other nodes",
};

function localMessage<Key>(locality: ServerLocality, request: LockRequest<Key>): string {
  const fix =
    locality === 'galera'
      ? 'Send every lock of the cluster to one node (`configureLockConnections(target, ' +
        '{ connection })` with that node), or pass `serverLocal: true` for a deliberately ' +
        'single-node setup.'
      : 'Point the locks at the primary: `configureLockConnections(target, { connection })` ' +
        'with its settings, or a target connected to it; or pass `serverLocal: true` for locks ' +
        'meant to exclude only the sessions of this one server.';
  return `The server of the lock ${request.label} ${WHY[locality]}. Nothing was locked. ${fix}`;
}

/** How long a stalled holder keeps `session` on the server; undefined when not bounded so. */
export function stallLimitOf(session: SqlSession, dialect: Dialect<unknown>): number | undefined {
  const free = session.memo.get(APPLIED);
  return typeof free === 'number' ? dialect.serverBounds.stallLimit(free) : undefined;
}
