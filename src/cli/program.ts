import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import {
  DlockError,
  InvalidKeyError,
  InvalidOptionError,
  UnsupportedTargetError,
} from '../errors.js';
import { resolveConnection, type ConnectionSettings } from './connection-settings.js';
import { parseDuration } from './duration.js';
import { EXIT } from './exit-codes.js';
import { createLogger, type Logger } from './log.js';
import { runLocked } from './run.js';
import { setUpFencingTokens } from './setup-fencing.js';
import { printStatus } from './status.js';
import {
  CONNECTION_HELP,
  EXIT_CODES_HELP,
  FENCING_HELP,
  RUN_EXAMPLE,
  SETUP_FENCING_HELP,
} from './help.js';

/** The options of every command that connects. */
interface ConnectionOptions {
  url?: string;
  knexfile?: string;
  env?: string;
  verbose?: boolean;
}

/** The options of the commands that work on one lock. */
interface CommonOptions extends ConnectionOptions {
  key: string;
}

interface RunOptions extends CommonOptions {
  timeout?: number;
  wait: boolean;
  shared?: boolean;
  conflictExitCode: number;
  onLost: 'terminate' | 'ignore';
  killAfter: number;
  keepalive?: number;
  fencing?: boolean;
  serverLocal?: boolean;
  pooler?: 'session' | 'transaction';
  max?: number;
}

interface StatusOptions extends CommonOptions {
  json?: boolean;
  max?: number;
}

function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function slotCount(value: string): number {
  const max = Number(value);
  if (!/^\d+$/.test(value) || max < 1) {
    throw new InvalidArgumentError('--max is a whole number of holders, 1 or more.');
  }
  return max;
}

function exitCode(value: string): number {
  const code = Number(value);
  if (!/^\d+$/.test(value) || code > 255) {
    throw new InvalidArgumentError('An exit code is an integer from 0 to 255.');
  }
  return code;
}

function connectionOf(options: ConnectionOptions): Promise<ConnectionSettings> {
  return resolveConnection({ url: options.url, knexfile: options.knexfile, env: options.env });
}

/** The version in the package.json above this file, in src/ and in dist/ alike. */
function packageVersion(): string {
  let dir = dirname(realpathSync(process.argv[1] ?? '.'));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'knex-dlock' && pkg.version) return pkg.version;
    } catch {
      // No package.json here (or not ours): look one level up.
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

/** --key and the connection options, for the commands that work on one lock. */
function addCommonOptions(command: Command): Command {
  return addConnectionOptions(
    command.requiredOption('-k, --key <key>', 'the lock key (hashed to an int64 on PostgreSQL)'),
  );
}

/** The options that say where to connect, shared by every command. */
function addConnectionOptions(command: Command): Command {
  return command
    .option(
      '--url <url>',
      'database URL: postgres://, postgresql://, mysql:// or mariadb:// (default: $DATABASE_URL)',
    )
    .option('--knexfile <path>', "take the connection from this knexfile, as knex's CLI does")
    .option('--env <name>', 'the knexfile environment (default: $NODE_ENV, else development)')
    .option('--verbose', 'log each step on stderr')
    .addHelpText('after', CONNECTION_HELP);
}

/** Builds the `knex-dlock` program; `done` receives the exit code of the command that ran. */
export function buildProgram(done: (code: number) => void): Command {
  const program = new Command('knex-dlock')
    .description(
      'Run a command while holding a PostgreSQL advisory lock or a MySQL/MariaDB named lock, ' +
        'or see who holds one.',
    )
    .version(packageVersion(), '-V, --version')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  addRunCommand(program, done);
  addStatusCommand(program, done);
  addSetupFencingCommand(program, done);
  return program;
}

function addRunCommand(program: Command, done: (code: number) => void): void {
  const run = program
    .command('run')
    .summary('run a command while holding the lock')
    .description(
      'Take the lock, run the command while holding it, release it, and exit with the ' +
        "command's exit code. If the lock is not acquired, the command is not run. With " +
        '--fencing, the command gets the fencing token of its grant as $DLOCK_FENCING_TOKEN.',
    )
    .argument('<command...>', 'the command and its arguments (put them after --)')
    .passThroughOptions();
  addCommonOptions(run)
    .option(
      '--timeout <duration>',
      'longest wait for the lock, e.g. 500ms, 30s, 5m (default: forever)',
      duration,
    )
    .addOption(
      new Option('--no-wait', 'do not wait: give up at once if the lock is held').conflicts(
        'timeout',
      ),
    )
    .option('--shared', 'take a shared lock (PostgreSQL only)')
    .addOption(
      new Option(
        '--max <n>',
        'a semaphore instead of a lock: run while at most n holders of the key run',
      )
        .argParser(slotCount)
        .conflicts('shared'),
    )
    .option(
      '--conflict-exit-code <code>',
      'exit code when the lock is not acquired',
      exitCode,
      EXIT.conflict,
    )
    .addOption(
      new Option('--on-lost <action>', 'what to do if the lock is lost while the command runs')
        .choices(['terminate', 'ignore'])
        .default('terminate'),
    )
    .addOption(
      new Option('--kill-after <duration>', 'after a lost lock, SIGKILL this long after SIGTERM')
        .argParser(duration)
        .default(10_000, '10s'),
    )
    .addOption(
      new Option(
        '--keepalive <duration>',
        'check the lock connection this often while the command runs (default: once a second, a silent connection counts as lost within 2.5 s)',
      ).argParser(duration),
    )
    .option(
      '--fencing',
      'take a fencing token with the lock and give it to the command as $DLOCK_FENCING_TOKEN',
    )
    .option(
      '--server-local',
      'lock even on a standby, a read-only replica or a Galera node, whose locks exclude only ' +
        "that server's sessions",
    )
    .addOption(
      new Option(
        '--pooler <mode>',
        'PostgreSQL: how the pooler in front of the server pools (default: detected, taken as transaction)',
      ).choices(['session', 'transaction']),
    )
    .addHelpText('after', `${EXIT_CODES_HELP}\n${FENCING_HELP}\n\nExample:\n  ${RUN_EXAMPLE}`)
    .action(async (command: string[], options: RunOptions) => {
      const log = createLogger(options.verbose ?? false);
      const settings = async () => ({
        key: options.key,
        connection: await connectionOf(options),
        timeout: options.timeout,
        wait: options.wait,
        shared: options.shared ?? false,
        conflictExitCode: options.conflictExitCode,
        onLost: options.onLost,
        killAfter: options.killAfter,
        keepalive: options.keepalive,
        fencing: options.fencing ?? false,
        serverLocal: options.serverLocal ?? false,
        pooler: options.pooler,
        max: options.max,
      });
      done(await guard(log, async () => runLocked(await settings(), command, log)));
    });
}

function addStatusCommand(program: Command, done: (code: number) => void): void {
  const status = program
    .command('status')
    .summary('show whether the lock is held, and by whom')
    .description(
      'Show whether the lock is held and by which sessions: PostgreSQL pid, application name, ' +
        'client address and times from pg_locks and pg_stat_activity; MySQL connection id ' +
        'from IS_USED_LOCK with its PROCESSLIST row. Exits 0 whether or not it is held.',
    );
  addCommonOptions(status)
    .option('--json', 'print the result as JSON')
    .option('--max <n>', "the key is a semaphore's of n slots: show each slot", slotCount)
    .action(async (options: StatusOptions) => {
      const log = createLogger(options.verbose ?? false);
      const settings = async () => ({
        key: options.key,
        connection: await connectionOf(options),
        json: options.json ?? false,
        max: options.max,
      });
      done(await guard(log, async () => printStatus(await settings(), log)));
    });
}

function addSetupFencingCommand(program: Command, done: (code: number) => void): void {
  const setup = program
    .command('setup-fencing')
    .summary('create what fencing tokens come from, if it is missing')
    .description(
      'Create what fencing tokens (run --fencing) come from, if it is missing: the sequence ' +
        'knex_dlock_fencing on PostgreSQL, the table knex_dlock_fencing on MySQL / MariaDB. ' +
        'Run it once as a user who may create it (a deploy step, next to migrations) when the ' +
        'users that lock may not, then grant them USAGE on the sequence (PostgreSQL) or SELECT, ' +
        'INSERT, UPDATE on the table (MySQL). Running it again changes nothing.',
    );
  addConnectionOptions(setup)
    .addHelpText('after', SETUP_FENCING_HELP)
    .action(async (options: ConnectionOptions) => {
      const log = createLogger(options.verbose ?? false);
      done(await guard(log, async () => setUpFencingTokens(await connectionOf(options), log)));
    });
}

/** Turns a failure into a message and an exit code; a bug still shows its stack. */
async function guard(log: Logger, action: () => Promise<number>): Promise<number> {
  try {
    return await action();
  } catch (err) {
    if (
      err instanceof InvalidOptionError ||
      err instanceof InvalidKeyError ||
      err instanceof UnsupportedTargetError
    ) {
      log.error(err.message);
      return EXIT.usage;
    }
    if (err instanceof DlockError) {
      log.error(err.message);
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof Error) log.debug(`cause: ${cause.stack ?? cause.message}`);
      return EXIT.unavailable;
    }
    throw err;
  }
}

/** Parses `argv` (as process.argv) and runs the command; resolves the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let code: number = EXIT.usage;
  const program = buildProgram((result) => {
    code = result;
  });
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT.usage;
    throw err;
  }
  return code;
}
