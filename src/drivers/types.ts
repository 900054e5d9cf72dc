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
   * string, sent only without params, gives several). With `name`, a driver that can keeps `sql`
   * prepared on the connection under that name, so that the server parses it only once; the
   * caller gives each distinct text its own name. On MySQL, a statement without a result set
   * gives one row of its OK packet: `{ affectedRows, insertId, serverStatus }`.
   */
  query(sql: string, params?: readonly unknown[], name?: string): Promise<Row[][]>;
  /**
   * What a dialect remembers about this connection (which prepared statements and session
   * functions it has made); lives exactly as long as the session.
   */
  readonly memo: Map<symbol, unknown>;
  /**
   * Calls `listener` with the command tag of every statement the connection completes, whoever
   * sent it (e.g. "DISCARD ALL"); undefined when the driver cannot report them.
   */
  readonly watchCommandTags?: (listener: (tag: string) => void) => void;
  /** Whether the connection is inside a transaction block right now. */
  inTransaction(): boolean;
  /** The server's id of this session (PostgreSQL backend pid, MySQL connection id), if known. */
  readonly serverId?: number | undefined;
  /** The server's version string from the connection handshake, where the driver keeps it. */
  readonly serverVersion?: string | undefined;
  /**
   * Opens a short-lived second connection with this one's settings, to act on this session from
   * outside (cancel its statement); `close()` ends it.
   */
  openSibling(): Promise<SiblingSession>;
  /**
   * The driver's own request to cancel the statement running now, where the driver has one and
   * cannot name its session (libpq's cancel on pg's native client); undefined elsewhere.
   */
  readonly requestCancel?: () => Promise<void>;
  /** A protocol-level no-op (MySQL's COM_PING), where the driver has one. */
  readonly ping?: () => Promise<void>;
}

/** A short-lived connection opened by {@link SqlSession.openSibling}. */
export interface SiblingSession {
  query(sql: string, params?: readonly unknown[]): Promise<Row[][]>;
  close(): Promise<void>;
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

/**
 * Where a lock's connection can be driven to, for one target: the driver adapter. It lends the
 * target's own connection or borrows from its pool, and opens connections of the library's own
 * from the target's settings; it knows no SQL and no lock.
 */
export interface Driver {
  /** The name of the dialect in the registry (`src/dialects/registry.ts`). */
  readonly dialect: string;
  /** Names the target in messages, e.g. "a knex instance (pg)". */
  readonly description: string;
  /** Whether the target is a pool (knex instance, pg.Pool, mysql2 pool) rather than a connection. */
  readonly pooled: boolean;
  /** Whether every lock through the target runs inside a transaction (a knex transaction). */
  readonly transaction?: boolean;
  /**
   * The object that stands for the target's connection settings: the knex client, the pool.
   * Per-target state (the lock connections) is kept against it.
   */
  readonly identity: object;
  /** Lends the target's own connection, or borrows one from its pool. */
  lease(): Promise<ConnectionLease>;
  /**
   * Opens a connection of the library's own, outside the target's pool, from the target's
   * settings or from `settings` (a URL or the driver's connection config). Its lease's
   * `release()` closes it. Pools only.
   */
  open?(settings?: ConnectionSettings): Promise<ConnectionLease>;
  /**
   * Calls `onEnding` when the application shuts the target's pool down (`knex.destroy()`,
   * `pool.end()`), just before the pool ends. Pools only.
   */
  whenEnding?(onEnding: () => void): void;
}

/** A connection URL, or a connection config object as the target's driver takes it. */
export type ConnectionSettings = string | Readonly<Record<string, unknown>>;
