/**
 * Finds the databases for the tests and the examples: DLOCK_PG_URL / DLOCK_MYSQL_URL, else the
 * local servers; where one does not answer and a container runtime is available, a throwaway
 * container started with testcontainers; otherwise one error that says what to do.
 */
import mysql from 'mysql2/promise';
import pg from 'pg';

export const LOCAL_PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const LOCAL_MYSQL_URL = 'mysql://root@127.0.0.1:3306/test';

export interface DatabaseUrls {
  readonly pg: string;
  readonly mysql: string;
  /** Stops the containers started for this run, if any. */
  stop(): Promise<void>;
}

async function pgAnswers(url: string): Promise<boolean> {
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

async function containerRuntimeAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

const HOW_TO =
  'Point the tests at your servers with DLOCK_PG_URL (e.g. postgres://user:pass@host:5432/db) ' +
  'and DLOCK_MYSQL_URL (e.g. mysql://user:pass@host:3306/db), start local servers on ' +
  '127.0.0.1:5432 and 127.0.0.1:3306, or install Docker so that throwaway containers can be started.';

let resolved: Promise<DatabaseUrls> | undefined;

/** Resolves the database URLs once per process. */
export function databaseUrls(): Promise<DatabaseUrls> {
  resolved ??= resolveDatabaseUrls();
  return resolved;
}

async function resolveDatabaseUrls(): Promise<DatabaseUrls> {
  const pgUrl = process.env.DLOCK_PG_URL || LOCAL_PG_URL;
  const mysqlUrl = process.env.DLOCK_MYSQL_URL || LOCAL_MYSQL_URL;
  const [pgOk, mysqlOk] = await Promise.all([pgAnswers(pgUrl), mysqlAnswers(mysqlUrl)]);
  if (pgOk && mysqlOk) return { pg: pgUrl, mysql: mysqlUrl, stop: async () => undefined };

  const down = [
    !pgOk && `PostgreSQL at ${redact(pgUrl)}`,
    !mysqlOk && `MySQL at ${redact(mysqlUrl)}`,
  ]
    .filter(Boolean)
    .join(' and ');
  if (!(await containerRuntimeAvailable())) {
    throw new Error(
      `No database to run against: ${down} did not answer, and no container runtime is available. ${HOW_TO}`,
    );
  }
  const stops: (() => Promise<unknown>)[] = [];
  let pgFinal = pgUrl;
  let mysqlFinal = mysqlUrl;
  if (!pgOk) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:15-alpine').start();
    stops.push(() => container.stop());
    pgFinal = container.getConnectionUri();
  }
  if (!mysqlOk) {
    const { MariaDbContainer } = await import('@testcontainers/mariadb');
    const container = await new MariaDbContainer('mariadb:10.11').start();
    stops.push(() => container.stop());
    mysqlFinal = container.getConnectionUri(true);
  }
  return {
    pg: pgFinal,
    mysql: mysqlFinal,
    stop: async () => void (await Promise.all(stops.map((stop) => stop()))),
  };
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
