/**
 * Child processes for the end-to-end tests: the real CLI and the migration "replicas", run
 * from source through tsx so that no build is needed. Every process started here is killed
 * by `killStarted()` if a test leaves it running.
 */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Started {
  readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<Exit>;
  /** Resolves once stdout matches `pattern`; rejects if the process exits first or in time. */
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The same for stderr. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

const started = new Set<ChildProcess>();

/** Starts `node --import tsx <script> ...args` with piped stdio and `env` over a clean env. */
export function startNodeScript(
  script: string,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Started {
  const inherited = { ...process.env };
  delete inherited.DATABASE_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...inherited, ...env },
  });
  started.add(child);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<Exit>((resolve) =>
    child.once('close', (code, signal) => {
      started.delete(child);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    pid: child.pid ?? -1,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForStdout: (pattern, timeoutMs) => waitFor(child, 'stdout', () => out, pattern, timeoutMs),
    waitForStderr: (pattern, timeoutMs) => waitFor(child, 'stderr', () => err, pattern, timeoutMs),
  };
}

function waitFor(
  child: ChildProcessByStdio<Writable, Readable, Readable>,
  stream: 'stdout' | 'stderr',
  text: () => string,
  pattern: RegExp,
  timeoutMs = 8_000,
): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(text());
      if (!match) return false;
      cleanup();
      resolve(match);
      return true;
    };
    const onExit = () => {
      if (check()) return;
      cleanup();
      reject(new Error(`exited before printing ${pattern} on ${stream}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${pattern} on ${stream} within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child[stream].off('data', check);
      child.off('close', onExit);
    };
    if (check()) return;
    child[stream].on('data', check);
    child.once('close', onExit);
  });
}

/** Starts the knex-dlock CLI with `args`; DATABASE_URL is unset unless `env` sets it. */
export function startCli(args: readonly string[], env: Record<string, string> = {}): Started {
  return startNodeScript(CLI_PATH, args, env);
}

/** A `node -e` command for `knex-dlock run` to start: fast, and needs no fixture file. */
export function nodeCommand(script: string): string[] {
  return [process.execPath, '-e', script];
}

/** Kills whatever a failed test left running. */
export function killStarted(): void {
  for (const child of started) child.kill('SIGKILL');
  started.clear();
}

/** Whether a process with this pid is still alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
