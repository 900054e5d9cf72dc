/**
 * Plain database sessions for the end-to-end tests: hold a lock the way another process
 * would, and end a session from outside as an administrator would.
 */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { createLock, type BaseLock } from '../../src/index.js';
import { databaseUrls } from './databases.js';
import { openInspector, type DialectName } from './targets.js';

export interface Session {
  /** A target for createLock / inspectLock. */
  readonly target: object;
  /** pg backend pid or MySQL connection id. */
  readonly id: number;
  /** Runs one statement and returns its rows. */
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export async function urlFor(dialect: DialectName): Promise<string> {
  const urls = await databaseUrls();
  return dialect === 'postgres' ? urls.pg : urls.mysql;
}

export async function openSession(
  dialect: DialectName,
  applicationName?: string,
): Promise<Session> {
  const url = await urlFor(dialect);
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: url, application_name: applicationName });
    client.on('error', () => undefined);
    await client.connect();
    return {
      target: client,
      id: (client as unknown as { processID: number }).processID,
      query: async (sql, params) => (await client.query(sql, params)).rows,
      close: () => client.end().catch(() => undefined),
    };
  }
  const conn = await mysql.createConnection({ uri: url });
  conn.on('error', () => undefined);
  return {
    target: conn,
    id: conn.threadId,
    query: async (sql, params) => (await conn.query(sql, params))[0] as Record<string, unknown>[],
    close: () => conn.end().catch(() => undefined),
  };
}

/** Ends another session (pg_terminate_backend / KILL) and waits until it is gone. */
export async function terminateSession(dialect: DialectName, id: number): Promise<void> {
  const admin = await openInspector(dialect);
  try {
    await admin.kill(id);
  } finally {
    await admin.close();
  }
}

/** Takes `key` on a session of its own, as another process would; close() frees it. */
export async function holdLock(
  dialect: DialectName,
  key: string,
  options: { shared?: boolean; applicationName?: string } = {},
): Promise<{ session: Session; lock: BaseLock; close(): Promise<void> }> {
  const session = await openSession(dialect, options.applicationName);
  const lock = createLock(session.target, key, options.shared ? { shared: true } : {});
  if (!(await lock.acquire({ timeout: 5_000 }))) throw new Error(`could not take ${key}`);
  return {
    session,
    lock,
    close: async () => {
      await lock.close().catch(() => undefined);
      await session.close();
    },
  };
}
