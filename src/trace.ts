/**
 * What the library tells the `debug` package, so that `DEBUG=knex-dlock` shows lock activity
 * and `DEBUG=knex-dlock:connections` the library's own connections. Nothing is formatted or
 * timed unless a namespace is enabled, so tracing costs nothing when off.
 */
import createDebug from 'debug';

// The dialects' Wait and the drivers' SqlSession, as far as tracing reads them: structural, so
// that tracing sits on the bottom floor and every floor above can trace.
type Wait =
  | { readonly kind: 'try' }
  | { readonly kind: 'forever' }
  | { readonly kind: 'timed'; readonly ms: number };
interface SqlSession {
  readonly serverId?: number | undefined;
}

/** Acquire, wait, grant, timeout, release and loss of each lock. */
const lockLog = createDebug('knex-dlock');
/** Lock connections opened, closed and dropped. */
const connectionLog = createDebug('knex-dlock:connections');

function describeWait(wait: Wait): string {
  if (wait.kind === 'timed') return `wait up to ${Math.round(wait.ms)} ms`;
  return wait.kind === 'try' ? 'try' : 'wait forever';
}

/** The server's id of the session (PostgreSQL backend pid, MySQL connection id), if known. */
function on(session: SqlSession): string {
  return session.serverId === undefined ? '' : ` on connection ${session.serverId}`;
}

function elapsed(since: number): string {
  return `${(performance.now() - since).toFixed(1)} ms`;
}

/** One acquire, from its start to its outcome; undefined when lock tracing is off. */
export interface AcquireTrace {
  granted(session: SqlSession): void;
  notGranted(): void;
  failed(err: unknown): void;
}

export function traceAcquire(key: string, wait: Wait): AcquireTrace | undefined {
  if (!lockLog.enabled) return undefined;
  const started = performance.now();
  lockLog('acquire %s: %s', key, describeWait(wait));
  return {
    granted: (session) => lockLog('granted %s%s after %s', key, on(session), elapsed(started)),
    notGranted: () =>
      lockLog('%s %s after %s', wait.kind === 'try' ? 'busy' : 'timed out', key, elapsed(started)),
    failed: (err) =>
      lockLog('acquire %s failed after %s: %s', key, elapsed(started), messageOf(err)),
  };
}

/** A blocking acquire of `key` goes to the database on `session`, which waits if it must. */
export function traceServerWait(key: string, session: SqlSession, wait: Wait): void {
  if (lockLog.enabled) lockLog('server wait for %s%s (%s)', key, on(session), describeWait(wait));
}

/** When a hold began, for the release's trace; undefined when lock tracing is off. */
export function holdStarted(): number | undefined {
  return lockLog.enabled ? performance.now() : undefined;
}

export function traceRelease(key: string, session: SqlSession, heldSince: number | undefined) {
  if (!lockLog.enabled) return;
  const held = heldSince === undefined ? '' : ` after holding it ${elapsed(heldSince)}`;
  lockLog('released %s%s%s', key, on(session), held);
}

export function traceLoss(key: string, session: SqlSession | undefined, cause: unknown): void {
  if (!lockLog.enabled) return;
  lockLog('lost %s%s: %s', key, session ? on(session) : '', messageOf(cause));
}

/** A lock connection opened, or closed: idle, or with a `cause` that made its locks lost. */
export function traceConnection(
  event: 'opened' | 'closed',
  session: SqlSession,
  cause?: unknown,
): void {
  if (!connectionLog.enabled) return;
  const why = cause === undefined ? '' : `: ${messageOf(cause)}`;
  connectionLog('lock connection %s%s%s', event, on(session).replace(' on connection', ''), why);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
