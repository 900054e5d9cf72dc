/** One row of a result set, keyed by column name. */
export type Row = Record<string, unknown>;

/**
 * One pinned database connection, as dialects see it: it runs SQL and knows nothing of locks.
 */
export interface SqlSession {
  /** The physical connection, as a stable identity for per-connection memos. */
  readonly connection: object;
  /**
   * Runs `sql` with bound `params` and resolves one array of rows per statement (a multi-statement
   * string, sent only without params, gives several).
   */
  query(sql: string, params?: readonly unknown[]): Promise<Row[][]>;
  /** Whether the connection is inside a transaction block right now. */
  inTransaction(): boolean;
  /** Which MySQL-family server answers, when the driver knows; undefined for PostgreSQL. */
  readonly serverFlavor?: 'mysql' | 'mariadb';
  /**
   * Asks the server to cancel the statement running on this connection, from another one.
   * Resolves once the request was delivered; the running query then fails or returns early.
   */
  cancel(): Promise<void>;
  /** Resolves when the server answers a no-op on this connection (for keepalive checks). */
  ping(): Promise<void>;
}

/** A connection lent to one lock for as long as it needs it. */
export interface ConnectionLease {
  readonly session: SqlSession;
  /** Gives the connection back (to its pool, or to its owner) once it holds no lock. */
  release(): Promise<void>;
  /**
   * Closes the connection for good, so that the server drops every lock it holds. A connection
   * the caller owns is never closed; the lease only lets go of it and resolves false.
   */
  destroy(): Promise<boolean>;
  /**
   * Calls `onLost` once if the connection errors or ends while leased; returns the unsubscribe
   * function. Also keeps an 'error' event on a leased pooled client from crashing the process.
   */
  watch(onLost: (cause: unknown) => void): () => void;
  /**
   * Calls `onEnding` when the transaction this lease runs in is about to end (commit or
   * rollback), while statements can still be sent before the end; undefined when the lease is
   * not a transaction's.
   */
  onTransactionEnding?(onEnding: () => void): () => void;
}

/** What `createLock` built from its target: where connections come from, and for which SQL. */
export interface Driver {
  readonly dialect: 'postgres' | 'mysql';
  /** Names the target in messages, e.g. "a knex instance (pg)". */
  readonly description: string;
  /** Whether leases may have to wait for a connection (a pool) rather than get one at once. */
  readonly pooled: boolean;
  /** Lends a connection for one acquire (and the hold that follows). */
  lease(): Promise<ConnectionLease>;
}
