import { spawn, type ChildProcess } from 'node:child_process';
import { createLock } from '../api/create-lock.js';
import { createSemaphore } from '../api/semaphore/create-semaphore.js';
import { inspectLock } from '../api/inspect.js';
import type { Pooler } from '../connections/strategy.js';
import type { BaseLock } from '../lock/base-lock.js';
import { dialectModule } from '../dialects/registry.js';
import { FencingUnavailableError, InvalidOptionError, type LockLostError } from '../errors.js';
import { connect, type CliDatabase } from './connect.js';
import type { ConnectionSettings } from './connection-settings.js';
import { formatDuration } from './duration.js';
import { EXIT, signalExitCode } from './exit-codes.js';
import type { Logger } from './log.js';
import { formatHolder } from './status.js';
import { SignalRouter } from './signals.js';

/** What `knex-dlock run` was asked to do, after parsing. */
export interface RunSettings {
  readonly key: string;
  readonly connection: ConnectionSettings;
  /** Milliseconds; undefined waits forever. */
  readonly timeout: number | undefined;
  readonly wait: boolean;
  readonly shared: boolean;
  readonly conflictExitCode: number;
  readonly onLost: 'terminate' | 'ignore';
  /** Milliseconds between SIGTERM and SIGKILL when the lock is lost. */
  readonly killAfter: number;
  /** Milliseconds between checks that the lock's connection answers; undefined for none. */
  readonly keepalive: number | undefined;
  /** Take a fencing token with the lock and pass it on in FENCING_TOKEN_VARIABLE. */
  readonly fencing: boolean;
  /** Lock even on a server whose locks are local to it (a standby, a replica, a Galera node). */
  readonly serverLocal: boolean;
  /** How the pooler in front of PostgreSQL pools, as declared; undefined to detect. */
  readonly pooler: Pooler | undefined;
  /** A semaphore of this many holders instead of a lock; undefined for a lock. */
  readonly max: number | undefined;
}

/** What `run` holds while the command runs: a lock, or a slot of a semaphore. */
type Held = Pick<BaseLock, 'acquire' | 'close' | 'signal' | 'fencingToken'>;

/**
 * The variable that carries the grant's fencing token, in decimal, to the command. It is set
 * only with --fencing and removed otherwise: one inherited from an outer run is the token of
 * another grant, often of another lock, and a command that finds it would take it for its own.
 */
export const FENCING_TOKEN_VARIABLE = 'DLOCK_FENCING_TOKEN';

type ChildOutcome =
  | { readonly kind: 'exit'; readonly code: number | null; readonly signal: NodeJS.Signals | null }
  | { readonly kind: 'error'; readonly error: NodeJS.ErrnoException };

/**
 * Takes the lock, runs `command` with inherited stdio while holding it, releases it, and
 * resolves the exit code: the command's own, or one of {@link EXIT}.
 */
export async function runLocked(
  settings: RunSettings,
  command: readonly string[],
  log: Logger,
): Promise<number> {
  const { dialect } = dialectModule(settings.connection.dialect);
  if (settings.shared && !dialect.capabilities.shared) {
    throw new InvalidOptionError(
      `--shared needs a database with shared locks: ${dialect.title} locks are exclusive only.`,
    );
  }
  const signals = new SignalRouter();
  try {
    return await acquireAndRun(settings, command, log, signals);
  } finally {
    signals.dispose();
  }
}

async function acquireAndRun(
  settings: RunSettings,
  command: readonly string[],
  log: Logger,
  signals: SignalRouter,
): Promise<number> {
  const waiting = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  signals.route((signal) => {
    interrupted ??= signal;
    waiting.abort();
  });
  // A semaphore waits on all its slots at once: a small pool of the tool's own.
  const db = await connect(
    settings.connection,
    `knex-dlock run ${settings.key}`,
    settings.max !== undefined,
  );
  try {
    log.debug(`connected to ${db.description} (settings from ${settings.connection.source})`);
    const lock = heldOf(db, settings, log);
    const started = Date.now();
    let acquired = false;
    try {
      if (!interrupted) acquired = await lock.acquire(acquireOptions(settings, waiting.signal));
    } catch (err) {
      if (err instanceof FencingUnavailableError && !interrupted) {
        // The library released the grant before rejecting; closing the connection would too.
        log.error(`${err.message} The command was not run (exit code ${EXIT.unavailable}).`);
        if (err.cause instanceof Error) log.debug(`cause: ${err.cause.stack ?? err.cause.message}`);
        return EXIT.unavailable;
      }
      if (!interrupted) throw err;
    }
    if (interrupted) {
      if (acquired) await closeLock(lock, log);
      log.error(`${interrupted} received while waiting for the lock; the command was not run.`);
      return signalExitCode(interrupted);
    }
    if (!acquired) {
      log.error(await conflictMessage(db, settings, Date.now() - started));
      return settings.conflictExitCode;
    }
    // A fenced grant always carries its token: the library rejects one it cannot take.
    const token = lock.fencingToken;
    const withToken = token === undefined ? '' : ` with fencing token ${token}`;
    log.debug(`acquired the lock in ${Date.now() - started} ms${withToken}`);
    try {
      return await supervise(lock, token, command, settings, log, signals);
    } finally {
      await closeLock(lock, log);
    }
  } finally {
    await db.close();
  }
}

function heldOf(db: CliDatabase, settings: RunSettings, log: Logger): Held {
  const options = {
    fencing: settings.fencing,
    serverLocal: settings.serverLocal,
    ...(settings.pooler === undefined ? {} : { pooler: settings.pooler }),
    // The command's connection is the tool's own: bounded against silent faults by default.
    lossDetection: {},
    ...(settings.keepalive === undefined ? {} : { keepalive: settings.keepalive }),
  };
  if (settings.max !== undefined) {
    const semaphore = createSemaphore(db.target, settings.key, { ...options, max: settings.max });
    log.debug(
      `waiting for one of the ${settings.max} slots of "${settings.key}" (database keys ` +
        `${semaphore.slotKeys.map(String).join(', ')})`,
    );
    return semaphore;
  }
  const lock = createLock(db.target, settings.key, { ...options, shared: settings.shared });
  log.debug(`waiting for the lock "${settings.key}" (database key ${String(lock.actualKey)})`);
  return lock;
}

function acquireOptions(settings: RunSettings, signal: AbortSignal) {
  if (!settings.wait) return { block: false, signal };
  return settings.timeout === undefined ? { signal } : { timeout: settings.timeout, signal };
}

async function conflictMessage(db: CliDatabase, settings: RunSettings, waited: number) {
  if (settings.max !== undefined) {
    const why = settings.wait
      ? `timed out after ${formatDuration(waited)} waiting for a slot of "${settings.key}"`
      : `all ${settings.max} slots of "${settings.key}" are taken (--no-wait)`;
    return `${why}. The command was not run (exit code ${settings.conflictExitCode}).`;
  }
  const why = settings.wait
    ? `timed out after ${formatDuration(waited)} waiting for the lock "${settings.key}"`
    : `the lock "${settings.key}" is held elsewhere (--no-wait)`;
  let holders = '';
  try {
    const found = await inspectLock(db.target, settings.key);
    if (found.held) holders = `; held by ${found.holders.map(formatHolder).join(', ')}`;
  } catch {
    // Naming the holder is a courtesy; the conflict is reported either way.
  }
  return `${why}${holders}. The command was not run (exit code ${settings.conflictExitCode}).`;
}

/** Runs the command while the lock is held; stops it if the lock is lost. */
async function supervise(
  lock: Held,
  token: bigint | undefined,
  command: readonly string[],
  settings: RunSettings,
  log: Logger,
  signals: SignalRouter,
): Promise<number> {
  const held = lock.signal ?? AbortSignal.abort();
  if (held.aborted) {
    log.error(`${lostReason(held)} The command was not run.`);
    return EXIT.lost;
  }
  const [file = '', ...args] = command;
  log.debug(`running ${JSON.stringify(command)}`);
  const child = spawn(file, args, { stdio: 'inherit', env: commandEnvironment(token) });
  const outcome = waitForChild(child, log);
  signals.route((signal) => {
    log.debug(`passing ${signal} on to the command`);
    child.kill(signal);
  });
  let stopped = false;
  let killTimer: NodeJS.Timeout | undefined;
  const onLost = () => {
    if (settings.onLost === 'ignore') {
      log.error(`${lostReason(held)} The command keeps running (--on-lost=ignore).`);
      return;
    }
    stopped = true;
    log.error(
      `${lostReason(held)} Stopping the command: SIGTERM now, SIGKILL after ` +
        `${formatDuration(settings.killAfter)}.`,
    );
    child.kill('SIGTERM');
    killTimer = setTimeout(() => {
      log.error('the command is still running after SIGTERM; sending SIGKILL.');
      child.kill('SIGKILL');
    }, settings.killAfter);
  };
  held.addEventListener('abort', onLost, { once: true });
  let result: ChildOutcome;
  try {
    result = await outcome;
  } finally {
    held.removeEventListener('abort', onLost);
    clearTimeout(killTimer);
    // From here on a signal ends knex-dlock itself; its closing connection frees the lock.
    signals.dispose();
  }
  return exitCodeOf(result, file, stopped, log);
}

/** knex-dlock's environment with this grant's fencing token, or with none at all. */
function commandEnvironment(token: bigint | undefined): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env[FENCING_TOKEN_VARIABLE];
  if (token !== undefined) env[FENCING_TOKEN_VARIABLE] = token.toString();
  return env;
}

function waitForChild(child: ChildProcess, log: Logger): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    child.on('error', (error: NodeJS.ErrnoException) => {
      // Without a pid the command never started; otherwise a kill failed, which 'exit' follows.
      if (child.pid === undefined) resolve({ kind: 'error', error });
      else log.debug(`signalling the command failed: ${error.message}`);
    });
    child.once('exit', (code, signal) => resolve({ kind: 'exit', code, signal }));
  });
}

function exitCodeOf(result: ChildOutcome, file: string, stopped: boolean, log: Logger): number {
  if (result.kind === 'error') {
    const notFound = result.error.code === 'ENOENT';
    log.error(`cannot run "${file}": ${notFound ? 'command not found' : result.error.message}.`);
    return notFound ? EXIT.notFound : EXIT.cannotExecute;
  }
  const code = result.code ?? signalExitCode(result.signal ?? 'SIGKILL');
  log.debug(
    result.code === null
      ? `the command was ended by ${result.signal ?? 'a signal'}`
      : `the command exited with code ${result.code}`,
  );
  if (stopped) {
    log.error(`the command was stopped because the lock was lost (exit code ${EXIT.lost}).`);
    return EXIT.lost;
  }
  return code;
}

function lostReason(held: AbortSignal): string {
  const reason = held.reason as LockLostError | undefined;
  return reason?.message ?? 'The lock was lost.';
}

async function closeLock(lock: Held, log: Logger): Promise<void> {
  try {
    await lock.close();
    log.debug('released the lock');
  } catch (err) {
    log.error(
      `releasing the lock failed (${(err as Error).message}); closing the connection frees it.`,
    );
  }
}
