/**
 * Throwaway private database servers started from the installed binaries, for tests that need
 * a server of their own: a PostgreSQL 15 primary with a streaming hot standby, a MariaDB (plain,
 * read-only, or a one-node Galera cluster), and a PgBouncer in front of a PostgreSQL. Each lives
 * in a new temporary directory and listens on free loopback ports; its `stop()` kills what it
 * started and deletes the directory, and may be called any number of times.
 *
 * PostgreSQL and PgBouncer refuse to run as root: they run as the OS user `postgres`, which
 * owns the temporary directory.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import pg from 'pg';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const MARIADB_INSTALL_DB = '/usr/bin/mariadb-install-db';
const MARIADBD = '/usr/sbin/mariadbd';
const GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so';
const PGBOUNCER = '/usr/sbin/pgbouncer';
const OS_USER = 'postgres';

/** What each kind of private server needs from the machine. */
const NEEDS = {
  postgres: [join(PG_BIN, 'initdb'), join(PG_BIN, 'pg_ctl'), join(PG_BIN, 'pg_basebackup')],
  mariadb: [MARIADB_INSTALL_DB, MARIADBD],
  galera: [MARIADB_INSTALL_DB, MARIADBD, GALERA_PROVIDER],
  pgbouncer: [PGBOUNCER],
} as const;

/**
 * Why private servers of `kind` cannot start here (not root, or a binary missing), or
 * undefined when they can: the deployment tests then skip, saying why.
 */
export function privateServersUnavailable(kind: keyof typeof NEEDS): string | undefined {
  if (process.getuid?.() !== 0) return 'private servers need root (they run as other users)';
  const missing = NEEDS[kind].filter((path) => !existsSync(path));
  return missing.length ? `not installed: ${missing.join(', ')}` : undefined;
}

/** Skips the suite of `context` (a `before` hook), saying why, where servers of `kind` cannot start. */
export function skipWithoutPrivateServers(context: Mocha.Context, kind: keyof typeof NEEDS): void {
  const unavailable = privateServersUnavailable(kind);
  if (unavailable) {
    console.log(`      skipped: ${unavailable}`);
    context.skip();
  }
}

const START_TIMEOUT_MS = 60_000;
const CATCH_UP_TIMEOUT_MS = 30_000;
const PROMOTE_TIMEOUT_MS = 30_000;
/** How long a process has to exit after SIGTERM before it gets SIGKILL. */
const KILL_AFTER_MS = 10_000;
const POLL_MS = 100;
/** How many lines of a server's log an error quotes. */
const LOG_LINES = 5;

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/test`. */
  readonly url: string;
  readonly port: number;
  /** The server's data directory, inside the pair's temporary directory. */
  readonly dir: string;
  /** Starts the server again after `stop()`. */
  start(): Promise<void>;
  /** Stops this server (`pg_ctl stop -m mode`, fast by default) and keeps its directory. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Promotes a standby; resolves once it is out of recovery. */
  promote(): Promise<void>;
}

export interface PostgresPair {
  readonly primary: PostgresServer;
  readonly standby: PostgresServer;
  /** waits until the standby has replayed everything the primary has flushed */
  caughtUp(): Promise<void>;
  /** Stops both servers and deletes their directory. */
  stop(): Promise<void>;
}

export interface PrivateMariadb {
  /** `mysql://root@127.0.0.1:<port>/test`. */
  readonly url: string;
  readonly port: number;
  /** Kills the server and deletes its directory. */
  stop(): Promise<void>;
}

export interface MariadbOptions {
  /** Starts the server with `--read-only`. */
  readonly readOnly?: boolean;
  /** Starts the server as the only node of a new Galera cluster. */
  readonly galera?: boolean;
}

export interface PrivatePgbouncer {
  /** `postgres://postgres@127.0.0.1:<port>/session`: the upstream database, session pooling. */
  readonly sessionUrl: string;
  /** `postgres://postgres@127.0.0.1:<port>/transaction`: the upstream database, transaction pooling. */
  readonly transactionUrl: string;
  readonly port: number;
  /** Kills PgBouncer and starts it again on the same port. */
  restart(): Promise<void>;
  /** Kills PgBouncer and deletes its directory. */
  stop(): Promise<void>;
}

export interface PgbouncerOptions {
  /** The PostgreSQL that both pooled databases lead to, e.g. postgres://postgres@127.0.0.1:5432/test. */
  readonly upstreamUrl: string;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL primary and standby

/**
 * Initialises and starts a primary, creates the database `test` on it, and starts a hot standby
 * that streams from it, made with `pg_basebackup`. Rejects with the last lines of the log of the
 * step that failed, after cleaning up.
 */
export async function startPostgresPair(): Promise<PostgresPair> {
  const dir = await postgresOwnedTempDir('knex-dlock-pgpair-');
  const [primaryPort, standbyPort] = await freePorts(2);
  const primary = postgresServer(dir, 'primary', primaryPort!);
  const standby = postgresServer(dir, 'standby', standbyPort!);
  const lastResort = atExit(() => {
    primary.kill();
    standby.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.all([primary.halt(), standby.halt()]);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      lastResort();
    })());
  try {
    await initPrimary(dir, primary);
    await primary.start();
    await createTestDatabase(primary.port);
    await baseBackup(dir, primary, standby);
    await standby.start();
  } catch (err) {
    await stop();
    throw err;
  }
  const pair: PostgresPair = {
    primary: primary.server,
    standby: standby.server,
    caughtUp: () => caughtUp(primary.url, standby.url),
    stop,
  };
  await pair.caughtUp().catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return pair;
}

/** One server of the pair, with what the pair needs beyond the public interface. */
interface ManagedPostgres {
  readonly server: PostgresServer;
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly log: string;
  start(): Promise<void>;
  /** Stops the server whatever it is doing, killing it if `pg_ctl` cannot; never throws. */
  halt(): Promise<void>;
  /** Synchronously sends the postmaster an immediate shutdown (SIGQUIT), if it runs. */
  kill(): void;
}

function postgresServer(dir: string, name: string, port: number): ManagedPostgres {
  const dataDir = join(dir, name);
  const log = join(dir, `${name}.log`);
  const url = `postgres://postgres@127.0.0.1:${port}/test`;
  let pid: number | undefined;

  const start = async () => {
    await pgCtl(['-D', dataDir, '-l', log, '-w', '-t', '60', 'start'], `start the ${name}`, log);
    pid = await postmasterPid(dataDir);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    if (!(await pgRunning(dataDir))) return;
    await pgCtl(['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop'], `stop the ${name}`, log);
    pid = undefined;
  };
  const promote = async () => {
    await pgCtl(['-D', dataDir, '-w', '-t', '60', 'promote'], `promote the ${name}`, log);
    await poll(
      `the ${name} to leave recovery`,
      async () => !(await pgValue<boolean>(url, 'SELECT pg_is_in_recovery() AS value')),
      PROMOTE_TIMEOUT_MS,
      log,
    );
  };
  const kill = () => {
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Already gone.
    }
  };
  const halt = async () => {
    await stop('immediate').catch(() => undefined);
    const running = pid ?? (await postmasterPid(dataDir));
    if (running !== undefined && (await pgRunning(dataDir))) {
      try {
        process.kill(running, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    pid = undefined;
  };
  return {
    server: { url, port, dir: dataDir, start, stop, promote },
    url,
    port,
    dataDir,
    log,
    start,
    halt,
    kill,
  };
}

/** `initdb`, then the settings and `pg_hba.conf` lines that a primary with a standby needs. */
async function initPrimary(dir: string, primary: ManagedPostgres): Promise<void> {
  await asPostgres(
    join(PG_BIN, 'initdb'),
    [
      '-D',
      primary.dataDir,
      '-A',
      'trust',
      '-U',
      'postgres',
      '--no-sync',
      '--encoding=UTF8',
      '--locale=C',
    ],
    'initialise the primary',
    { cwd: dir },
  );
  await appendFile(
    join(primary.dataDir, 'postgresql.conf'),
    [
      '',
      "listen_addresses = '127.0.0.1'",
      `port = ${primary.port}`,
      "unix_socket_directories = ''",
      'wal_level = replica',
      'max_wal_senders = 5',
      'hot_standby = on',
      'fsync = off',
      '',
    ].join('\n'),
  );
  await appendFile(
    join(primary.dataDir, 'pg_hba.conf'),
    ['', 'host replication all 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 trust', ''].join(
      '\n',
    ),
  );
}

async function createTestDatabase(port: number): Promise<void> {
  const client = new pg.Client({
    connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('CREATE DATABASE test');
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Copies the primary into the standby's directory with `pg_basebackup -R` (which writes
 * `standby.signal` and `primary_conninfo`) and gives the standby its own port. `-c fast` asks
 * for an immediate checkpoint: the default spread checkpoint makes the copy wait minutes.
 */
async function baseBackup(
  dir: string,
  primary: ManagedPostgres,
  standby: ManagedPostgres,
): Promise<void> {
  await asPostgres(
    join(PG_BIN, 'pg_basebackup'),
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(primary.port),
      '-U',
      'postgres',
      '-D',
      standby.dataDir,
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
    ],
    'copy the primary for the standby',
    { cwd: dir },
  );
  // postgresql.auto.conf is read after postgresql.conf, whose port is the primary's.
  await appendFile(join(standby.dataDir, 'postgresql.auto.conf'), `port = ${standby.port}\n`);
}

/** Polls the standby until its replay position reaches the primary's flush position. */
async function caughtUp(primaryUrl: string, standbyUrl: string): Promise<void> {
  const target = await pgValue<string>(
    primaryUrl,
    'SELECT pg_current_wal_flush_lsn()::text AS value',
  );
  await poll(
    `the standby to replay the primary's WAL up to ${target}`,
    () =>
      pgValue<boolean | null>(
        standbyUrl,
        'SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0 AS value',
        [target],
      ).then((value) => value === true),
    CATCH_UP_TIMEOUT_MS,
  );
}

async function pgCtl(args: readonly string[], what: string, log: string): Promise<void> {
  await asPostgres(join(PG_BIN, 'pg_ctl'), args, what, { cwd: join(log, '..'), log });
}

/** Whether a postmaster runs on `dataDir`: `pg_ctl status` exits with 0 if so, 3 if not. */
async function pgRunning(dataDir: string): Promise<boolean> {
  const { code } = await run(
    'runuser',
    ['-u', OS_USER, '--', join(PG_BIN, 'pg_ctl'), 'status', '-D', dataDir],
    { cwd: join(dataDir, '..') },
  );
  return code === 0;
}

/** The postmaster's pid: the first line of `postmaster.pid`. */
async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Runs one query on a new connection and returns the `value` column of its first row. */
async function pgValue<T>(url: string, sql: string, params: unknown[] = []): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ value: T }>(sql, params);
    return rows[0]!.value;
  } finally {
    await client.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/**
 * Initialises a data directory with `mariadb-install-db` (root without a password) and starts
 * `mariadbd` on it, read-only or as a one-node Galera cluster if asked; resolves once the
 * database `test` exists (and, for Galera, once wsrep is ready).
 */
export async function startMariadb(options: MariadbOptions = {}): Promise<PrivateMariadb> {
  const dir = await mkdtemp(join(tmpdir(), 'knex-dlock-mariadb-'));
  const [port, gcommPort, istPort, sstPort] = await freePorts(options.galera ? 4 : 1);
  const dataDir = join(dir, 'data');
  const log = join(dir, 'error.log');
  const url = `mysql://root@127.0.0.1:${port}/test`;
  let child: ChildProcess | undefined;
  const lastResort = atExit(() => {
    killNow(child);
    rmSync(dir, { recursive: true, force: true });
  });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await terminate(child);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      lastResort();
    })());
  try {
    await run(
      MARIADB_INSTALL_DB,
      [
        // --no-defaults has to come first.
        '--no-defaults',
        '--user=root',
        `--datadir=${dataDir}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        '--skip-name-resolve',
        // Its own temporary files, not the shared /tmp, where another server starting or
        // bootstrapping at the same moment may remove or reuse them.
        `--tmpdir=${dir}`,
      ],
      { cwd: dir, what: 'initialise the MariaDB data directory' },
    ).then(throwIfFailed);
    const args = [
      '--no-defaults',
      '--user=root',
      `--datadir=${dataDir}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${join(dir, 'sock')}`,
      `--pid-file=${join(dir, 'mariadbd.pid')}`,
      `--log-error=${log}`,
      `--tmpdir=${dir}`,
      ...(options.readOnly ? ['--read-only'] : []),
      ...(options.galera ? galeraArgs(gcommPort!, istPort!, sstPort!) : []),
    ];
    child = spawn(MARIADBD, args, { cwd: dir, stdio: 'ignore' });
    child.on('error', () => undefined);
    const exited = exitOf(child);
    const connect = () =>
      mysql.createConnection({ uri: url.replace(/\/test$/, '/'), connectTimeout: 2_000 });
    await poll(
      'MariaDB to answer SELECT 1',
      async () => {
        const conn = await connect();
        try {
          await conn.query('SELECT 1');
          await conn.query('CREATE DATABASE IF NOT EXISTS test');
          return true;
        } finally {
          await conn.end().catch(() => undefined);
        }
      },
      START_TIMEOUT_MS,
      log,
      exited,
    );
    if (options.galera) await galeraReady(url, log, exited);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, port: port!, stop };
}

/**
 * A one-node Galera cluster: `gcomm://` bootstraps a new cluster. Its group communication,
 * IST and SST addresses are set to free loopback ports, away from the defaults (4567, 4568,
 * 4444) that another server may use; gcache is kept small since nothing needs to catch up.
 */
function galeraArgs(gcommPort: number, istPort: number, sstPort: number): string[] {
  return [
    '--wsrep-on=ON',
    `--wsrep-provider=${GALERA_PROVIDER}`,
    '--wsrep-cluster-address=gcomm://',
    '--wsrep-cluster-name=knex-dlock',
    '--wsrep-node-address=127.0.0.1',
    `--wsrep-sst-receive-address=127.0.0.1:${sstPort}`,
    `--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:${gcommPort};ist.recv_addr=127.0.0.1:${istPort};gcache.size=16M`,
    '--binlog-format=ROW',
    '--innodb-autoinc-lock-mode=2',
  ];
}

async function galeraReady(url: string, log: string, exited: Promise<string>): Promise<void> {
  await poll(
    'Galera to report wsrep_on = 1 and wsrep_ready = ON',
    async () => {
      const conn = await mysql.createConnection({ uri: url, connectTimeout: 2_000 });
      try {
        const [on] = await conn.query('SELECT @@global.wsrep_on AS value');
        const [ready] = await conn.query("SHOW STATUS LIKE 'wsrep_ready'");
        return (
          Number((on as { value: unknown }[])[0]?.value) === 1 &&
          (ready as { Value: unknown }[])[0]?.Value === 'ON'
        );
      } finally {
        await conn.end().catch(() => undefined);
      }
    },
    START_TIMEOUT_MS,
    log,
    exited,
  );
}

// ---------------------------------------------------------------------------------------------
// PgBouncer

/**
 * Starts a PgBouncer with two databases that both lead to `upstreamUrl`'s database: `session`
 * (session pooling) and `transaction` (transaction pooling), with trust authentication for the
 * user `postgres` and a pool of 4 server connections per database, so that transaction pooling
 * really shares backends. Resolves once `SELECT 1` works through both.
 */
export async function startPgbouncer(options: PgbouncerOptions): Promise<PrivatePgbouncer> {
  const dir = await postgresOwnedTempDir('knex-dlock-pgbouncer-');
  const [port] = await freePorts(1);
  const log = join(dir, 'pgbouncer.log');
  const ini = join(dir, 'pgbouncer.ini');
  const sessionUrl = `postgres://postgres@127.0.0.1:${port}/session`;
  const transactionUrl = `postgres://postgres@127.0.0.1:${port}/transaction`;
  let child: ChildProcess | undefined;
  const lastResort = atExit(() => {
    killNow(child);
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async () => {
    // -u: PgBouncer refuses to run as root, and drops to this user itself.
    child = spawn(PGBOUNCER, ['-u', OS_USER, ini], { cwd: dir, stdio: 'ignore' });
    child.on('error', () => undefined);
    const exited = exitOf(child);
    await poll(
      'PgBouncer to answer SELECT 1 on both databases',
      async () => {
        for (const url of [sessionUrl, transactionUrl]) await pgValue(url, 'SELECT 1 AS value');
        return true;
      },
      START_TIMEOUT_MS,
      log,
      exited,
    );
  };
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await terminate(child);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      lastResort();
    })());
  const restart = async () => {
    if (stopping) throw new Error('PgBouncer was stopped');
    await terminate(child);
    await start();
  };

  try {
    await writePgbouncerConfig(dir, ini, log, port!, new URL(options.upstreamUrl));
    await start();
  } catch (err) {
    await stop();
    throw err;
  }
  return { sessionUrl, transactionUrl, port: port!, restart, stop };
}

async function writePgbouncerConfig(
  dir: string,
  ini: string,
  log: string,
  port: number,
  upstream: URL,
): Promise<void> {
  const host = upstream.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const upstreamPort = upstream.port || '5432';
  const dbname = decodeURIComponent(upstream.pathname.slice(1)) || 'postgres';
  const target = `host=${host} port=${upstreamPort} dbname=${dbname}`;
  const authFile = join(dir, 'userlist.txt');
  await writeFile(authFile, '"postgres" ""\n');
  await writeFile(
    ini,
    [
      '[databases]',
      `session = ${target} pool_mode=session pool_size=60`,
      `transaction = ${target} pool_mode=transaction`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${authFile}`,
      'default_pool_size = 4',
      'max_client_conn = 200',
      `logfile = ${log}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      'server_reset_query = DISCARD ALL',
      'ignore_startup_parameters = extra_float_digits,options,statement_timeout,idle_in_transaction_session_timeout,application_name',
      '',
    ].join('\n'),
  );
}

// ---------------------------------------------------------------------------------------------
// Processes, files and ports

interface RunResult {
  readonly code: number;
  readonly output: string;
  readonly what: string;
  readonly log?: string;
}

/** Runs a command to its end; resolves with its exit code and output, never rejects. */
function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; log?: string; what?: string },
): Promise<RunResult> {
  return new Promise((resolve) => {
    // A clean environment: PG* variables of the caller must not redirect the tools.
    const env = { PATH: process.env.PATH ?? '', LC_ALL: 'C' };
    execFile(
      command,
      args,
      { cwd: options.cwd, env, timeout: START_TIMEOUT_MS * 2, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({
          code,
          output: `${stdout}${stderr}`,
          what: options.what ?? command,
          ...(options.log ? { log: options.log } : {}),
        });
      },
    );
  });
}

/** Rejects with the last lines of the command's output and of its log if it failed. */
async function throwIfFailed(result: RunResult): Promise<RunResult> {
  if (result.code === 0) return result;
  const said = [lastLines(result.output), result.log ? await lastLinesOf(result.log) : '']
    .filter(Boolean)
    .join('\n');
  throw new Error(`could not ${result.what} (exit code ${result.code})${said ? `\n${said}` : ''}`);
}

/**
 * Runs a PostgreSQL tool as the OS user `postgres` in `cwd`, a directory that user can enter;
 * rejects with its output, and the last lines of `log` if given, if it fails.
 */
async function asPostgres(
  command: string,
  args: readonly string[],
  what: string,
  options: { cwd: string; log?: string },
): Promise<void> {
  await run('runuser', ['-u', OS_USER, '--', command, ...args], { ...options, what }).then(
    throwIfFailed,
  );
}

/** A new temporary directory owned by the OS user `postgres`. */
async function postgresOwnedTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    const [uid, gid] = await Promise.all([idOf('-u'), idOf('-g')]);
    await chown(dir, uid, gid);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

async function idOf(flag: '-u' | '-g'): Promise<number> {
  const result = await run('id', [flag, OS_USER], {
    cwd: tmpdir(),
    what: `find the OS user ${OS_USER}`,
  }).then(throwIfFailed);
  const id = Number.parseInt(result.output.trim(), 10);
  if (!Number.isInteger(id)) throw new Error(`id ${flag} ${OS_USER} said ${result.output.trim()}`);
  return id;
}

/**
 * Polls `probe` until it resolves with true; a probe that rejects counts as not yet. Fails
 * after `timeoutMs`, or as soon as `exited` settles, with the probe's last error and the last
 * lines of `log`.
 */
async function poll(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  log?: string,
  exited?: Promise<string>,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let gone: string | undefined;
  void exited?.then((how) => (gone = how));
  let last: unknown;
  for (;;) {
    try {
      if (await probe()) return;
      last = undefined;
    } catch (err) {
      last = err;
    }
    const reason =
      gone !== undefined
        ? `the server ${gone}`
        : performance.now() > deadline
          ? `no success within ${timeoutMs} ms`
          : undefined;
    if (reason) {
      const said = log ? await lastLinesOf(log) : '';
      const error = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(`waiting for ${what}: ${reason}${error}${said ? `\n${said}` : ''}`, {
        cause: last,
      });
    }
    await sleep(POLL_MS);
  }
}

/** Resolves, saying how, once `child` has exited. */
function exitOf(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(`exited (${child.exitCode ?? child.signalCode})`);
      return;
    }
    child.once('error', (err) => resolve(`could not be started: ${err.message}`));
    child.once('exit', (code, signal) => resolve(`exited (${code ?? signal})`));
  });
}

/** SIGTERM, then SIGKILL after KILL_AFTER_MS; resolves once the process is gone. Never throws. */
async function terminate(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    return;
  }
  const exited = exitOf(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
  await exited;
  clearTimeout(timer);
}

function killNow(child: ChildProcess | undefined): void {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/**
 * Registers a synchronous cleanup to run if the process exits while it is still registered,
 * so that a test run that ends without `stop()` leaves no server behind. Returns the function
 * that unregisters it.
 */
function atExit(cleanup: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const each of exitCleanups) {
        try {
          each();
        } catch {
          // Best effort: the process is exiting.
        }
      }
    });
  }
  exitCleanups.add(cleanup);
  return () => void exitCleanups.delete(cleanup);
}

const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-LOG_LINES).join('\n');
}

async function lastLinesOf(file: string): Promise<string> {
  return lastLines(await readFile(file, 'utf8').catch(() => ''));
}

/**
 * Free loopback ports, found by listening on port 0 on 127.0.0.1. All probes listen at once,
 * so that the ports are distinct.
 */
async function freePorts(count: number): Promise<number[]> {
  const probes: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const probe = createServer();
      probes.push(probe);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          probe.once('error', reject);
          probe.listen(0, '127.0.0.1', () => {
            const address = probe.address();
            if (typeof address === 'object' && address) resolve(address.port);
            else reject(new Error('no port'));
          });
        }),
      );
    }
    return ports;
  } finally {
    await Promise.all(
      probes.map((probe) => new Promise<void>((resolve) => probe.close(() => resolve()))),
    );
  }
}
