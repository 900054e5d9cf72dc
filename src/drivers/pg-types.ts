/** The shapes of node-postgres objects the library uses, so that no pg types are needed. */
import type { ConnectionEmitter } from './connection-events.js';
import type { Row } from './types.js';

export interface PgResult {
  rows: Row[];
}

/** A query as node-postgres takes it; `name` makes it a prepared statement of the connection. */
export interface PgQueryConfig {
  name?: string;
  text: string;
  values?: unknown[];
}

export type PgCallback = (err: Error | null, result: PgResult | PgResult[]) => void;

/**
 * The parts of a node-postgres `Client` (or `PoolClient`) the library uses. pg's native client
 * (`pg.native.Client`, over libpq) has no `processID`: its socket, backend pid and cancel live
 * inside libpq, reached through `native`.
 */
export interface PgClientLike extends ConnectionEmitter {
  query(sql: string, params?: unknown[]): Promise<PgResult | PgResult[]>;
  query(sql: string, params: unknown[] | undefined, callback: PgCallback): void;
  query(config: PgQueryConfig, callback: PgCallback): void;
  connect(): Promise<unknown>;
  end(): Promise<void>;
  readonly processID?: number | null;
  readonly connectionParameters: object;
  readonly native?: PgNativeBinding;
  getTransactionStatus?(): string | null;
  release?(destroy?: boolean | Error): void;
}

/** The pg-native object behind a `pg.native.Client`. */
export interface PgNativeBinding {
  /** Sends libpq's cancel request for the running statement; `done` gets libpq's failure. */
  cancel(done: (err?: Error) => void): void;
  /** 'error' when the connection broke; 'readyForQuery' after each statement's results. */
  on(event: 'error' | 'readyForQuery', listener: () => void): unknown;
  /** pg-native's own: stops watching libpq's socket for input. */
  _stopReading?(): void;
}

/** The parts of a node-postgres `Pool` the library uses. */
export interface PgPoolLike {
  connect(): Promise<PgClientLike>;
  readonly options: object;
  readonly Client: new (config: object) => PgClientLike;
  readonly totalCount: number;
}
