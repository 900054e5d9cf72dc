/**
 * A SCRIPTED STAND-IN FOR A MySQL 8 SERVER, for tests only.
 *
 * It exists only because no MySQL 8 server can be run where this project is developed (MariaDB
 * runs there), and it stands in for nothing else: not for MariaDB, not for PostgreSQL, not for
 * any server the tests can reach. It lets the MySQL-only paths of the MySQL dialect run without
 * a server, through the same `SqlSession` interface the drivers implement. Wherever MariaDB
 * behaves as MySQL does, the tests run the same scenario against the real server too, which
 * checks this stand-in where it can be checked; with DLOCK_MYSQL_URL pointing at a real MySQL 8,
 * every scenario runs against that server as well.
 *
 * It knows only the statements the MySQL dialect and its inspection send, and answers them as
 * MySQL 8.0 documents them and as its source (sql/item_func.cc, GET_LOCK and friends) implements
 * them:
 * - `GET_LOCK(name, timeout)`: 1 when granted, 0 when the timeout passed. The timeout is read as
 *   an integer (`val_int()`: 0.2 → 0, a try; 1.2 → 1; 1.5 → 2); negative or above 2^31 − 1 waits
 *   forever. A name the session holds is granted again at once: holds stack.
 * - Names are compared case-insensitively (the server lowercases them before locking); an empty
 *   name or one over 64 characters fails with 3057 ER_USER_LOCK_WRONG_NAME (as in 8.0.20's
 *   source; later releases are reported to answer 4163 for a long name).
 * - A wait that would close a cycle of waits fails at once with 3058 ER_USER_LOCK_DEADLOCK.
 * - `KILL QUERY` of a waiting GET_LOCK (from {@link ScriptedMysql8Session.openSibling}) fails it with 1317
 *   ER_QUERY_INTERRUPTED; nothing is granted.
 * - `RELEASE_LOCK(name)`: 1 released one hold, 0 held by another session, NULL held by none.
 * - Statements of one session run one after the other, as on one connection.
 * Errors are shaped as mysql2 shapes a server error: `message`, `code`, `errno`, `sqlState`,
 * `sqlMessage`.
 */
import type { Row, SiblingSession, SqlSession } from '../../src/drivers/types.js';

/** What `SELECT VERSION()` answers. */
export const SCRIPTED_MYSQL8_VERSION = '8.0.36';

const INT_MAX32 = 2 ** 31 - 1;
const NAME_CHAR_LEN = 64;

/** A server error, shaped as mysql2 reports one. */
export function mysqlServerError(
  errno: number,
  code: string,
  sqlState: string,
  message: string,
): Error {
  return Object.assign(new Error(message), { code, errno, sqlState, sqlMessage: message });
}

const userLockDeadlock = () =>
  mysqlServerError(
    3058,
    'ER_USER_LOCK_DEADLOCK',
    'HY000',
    'Deadlock found when trying to get user-level lock; try rolling back transaction/releasing ' +
      'locks and restarting lock acquisition.',
  );
const queryInterrupted = () =>
  mysqlServerError(1317, 'ER_QUERY_INTERRUPTED', '70100', 'Query execution was interrupted');
const wrongName = (name: string) =>
  mysqlServerError(
    3057,
    'ER_USER_LOCK_WRONG_NAME',
    '42000',
    `Incorrect user-level lock name '${name}'.`,
  );

interface Hold {
  readonly owner: ScriptedMysql8Session;
  refs: number;
}

interface Wait {
  readonly session: ScriptedMysql8Session;
  readonly name: string;
  readonly settle: (outcome: 'granted' | 'timed-out' | Error) => void;
}

/** The seconds MySQL waits for a GET_LOCK timeout argument; undefined waits forever. */
function secondsAsMysqlReadsThem(timeout: unknown): number | undefined {
  const n = Number(timeout);
  if (!Number.isFinite(n)) return 0;
  // Item::val_int() of a decimal literal rounds half away from zero.
  const whole = Math.sign(n) * Math.round(Math.abs(n));
  // val_int() lands in an unsigned variable: a negative becomes huge, and huge means forever.
  return whole < 0 || whole > INT_MAX32 ? undefined : whole;
}

/** The lock table of one stand-in server, shared by the sessions connected to it. */
export class ScriptedMysql8Server {
  readonly #holds = new Map<string, Hold>();
  readonly #waits: Wait[] = [];
  #nextConnectionId = 100;

  /** Opens a session, as a new connection to the server. */
  connect(): ScriptedMysql8Session {
    this.#nextConnectionId += 1;
    return new ScriptedMysql8Session(this, this.#nextConnectionId);
  }

  /** The connection id holding `name`, compared as MySQL compares names; undefined when free. */
  holderOf(name: string): number | undefined {
    return this.#holds.get(name.toLowerCase())?.owner.connectionId;
  }

  /** The connection ids waiting in GET_LOCK now, as PROCESSLIST would show them. */
  waitingConnections(): number[] {
    return this.#waits.map((wait) => wait.session.connectionId);
  }

  /** The connection ids waiting in GET_LOCK for `name`, compared as MySQL compares names. */
  waitersFor(name: string): number[] {
    const folded = name.toLowerCase();
    return this.#waits
      .filter((wait) => wait.name.toLowerCase() === folded)
      .map((wait) => wait.session.connectionId);
  }

  /** Every name held, lowercased as the server keeps them. */
  heldNames(): string[] {
    return [...this.#holds.keys()];
  }

  /** @internal */
  getLock(session: ScriptedMysql8Session, name: string, timeout: unknown): Promise<0 | 1> {
    const key = name.toLowerCase();
    const hold = this.#holds.get(key);
    if (!hold) {
      this.#holds.set(key, { owner: session, refs: 1 });
      return Promise.resolve(1);
    }
    if (hold.owner === session) {
      hold.refs += 1;
      return Promise.resolve(1);
    }
    const seconds = secondsAsMysqlReadsThem(timeout);
    if (seconds === 0) return Promise.resolve(0);
    if (this.#closesCycle(session, hold.owner)) return Promise.reject(userLockDeadlock());
    return new Promise<0 | 1>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const wait: Wait = {
        session,
        name: key,
        settle: (outcome) => {
          clearTimeout(timer);
          this.#waits.splice(this.#waits.indexOf(wait), 1);
          if (outcome === 'granted') resolve(1);
          else if (outcome === 'timed-out') resolve(0);
          else reject(outcome);
        },
      };
      this.#waits.push(wait);
      if (seconds !== undefined) timer = setTimeout(() => wait.settle('timed-out'), seconds * 1000);
    });
  }

  /** @internal */
  releaseLock(session: ScriptedMysql8Session, name: string): 0 | 1 | null {
    const key = name.toLowerCase();
    const hold = this.#holds.get(key);
    if (!hold) return null;
    if (hold.owner !== session) return 0;
    hold.refs -= 1;
    if (hold.refs === 0) this.#handOver(key);
    return 1;
  }

  /** @internal Releases every hold of `session`; resolves the count, holds stacked included. */
  releaseAll(session: ScriptedMysql8Session): number {
    let count = 0;
    for (const [key, hold] of [...this.#holds]) {
      if (hold.owner !== session) continue;
      count += hold.refs;
      hold.refs = 0;
      this.#handOver(key);
    }
    return count;
  }

  /** @internal A KILL QUERY of `session`'s statement: fails its wait, if it waits. */
  kill(session: ScriptedMysql8Session): void {
    this.#waits.find((wait) => wait.session === session)?.settle(queryInterrupted());
  }

  /** Gives a freed name to its first waiter, if any. */
  #handOver(key: string): void {
    this.#holds.delete(key);
    const next = this.#waits.find((wait) => wait.name === key);
    if (!next) return;
    this.#holds.set(key, { owner: next.session, refs: 1 });
    // A kill that lands between the grant and the end of the statement, as scripted.
    next.settle(next.session.takeInterruptAfterGrant() ? queryInterrupted() : 'granted');
  }

  /** Whether `waiter` waiting for a name `holder` holds would close a cycle of waits. */
  #closesCycle(waiter: ScriptedMysql8Session, holder: ScriptedMysql8Session): boolean {
    const seen = new Set<ScriptedMysql8Session>();
    for (let s: ScriptedMysql8Session | undefined = holder; s && !seen.has(s);) {
      if (s === waiter) return true;
      seen.add(s);
      const wait = this.#waits.find((w) => w.session === s);
      s = wait && this.#holds.get(wait.name)?.owner;
    }
    return false;
  }
}

/** One statement the session received, with its parameters. */
export interface ReceivedStatement {
  readonly sql: string;
  readonly params: readonly unknown[];
}

type Answer = (params: readonly unknown[]) => Row[] | Promise<Row[]>;

/**
 * One connection to a {@link ScriptedMysql8Server}, as the MySQL dialect sees a connection: a
 * `SqlSession` whose driver reports the server as MySQL.
 */
export class ScriptedMysql8Session implements SqlSession {
  readonly serverVersion = '8.0.36';
  readonly connection: { readonly threadId: number };
  readonly memo = new Map<symbol, unknown>();
  /** Every statement received, in order. */
  readonly statements: ReceivedStatement[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #interruptAfterGrant = false;
  #failNextGetLock: (() => Error) | undefined;
  #closed = false;

  constructor(
    readonly server: ScriptedMysql8Server,
    readonly connectionId: number,
  ) {
    this.connection = { threadId: connectionId };
  }

  /** Scripts the next GET_LOCK to fail at once with MySQL's 3058 or 1317, granting nothing. */
  failNextGetLock(error: 'deadlock' | 'interrupted'): void {
    this.#failNextGetLock = error === 'deadlock' ? userLockDeadlock : queryInterrupted;
  }

  /**
   * Scripts the next wait that is granted to fail with 1317 all the same, the name held: what a
   * KILL QUERY landing between the grant and the end of the statement does.
   */
  interruptAfterGrant(): void {
    this.#interruptAfterGrant = true;
  }

  /** @internal */
  takeInterruptAfterGrant(): boolean {
    const scripted = this.#interruptAfterGrant;
    this.#interruptAfterGrant = false;
    return scripted;
  }

  get serverId(): number {
    return this.connectionId;
  }

  /** Runs one known statement; `_name` (prepare under a name) changes nothing here. */
  query(sql: string, params: readonly unknown[] = [], _name?: string): Promise<Row[][]> {
    this.statements.push({ sql, params });
    const run = this.#queue.then(async () => {
      if (this.#closed) throw new Error("Can't add new command when connection is in closed state");
      return [await this.#answer(sql)(params)];
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  inTransaction(): boolean {
    return false;
  }

  /** Another connection, which knows `KILL QUERY <this session>`: a waiting GET_LOCK fails with 1317. */
  async openSibling(): Promise<SiblingSession> {
    return {
      query: async (sql, params = []) => {
        if (!/^KILL QUERY \?$/.test(sql) || params[0] !== this.connectionId) {
          throw new Error(`The scripted MySQL 8 sibling does not know ${sql} ${String(params)}`);
        }
        this.server.kill(this);
        return [[]];
      },
      close: async () => undefined,
    };
  }

  readonly ping = async (): Promise<void> => undefined;

  /** Ends the connection: the server releases what it held. */
  close(): void {
    this.#closed = true;
    this.server.kill(this);
    this.server.releaseAll(this);
  }

  #answer(sql: string): Answer {
    const text = sql.replace(/\s+/g, ' ').trim();
    const column = /^SELECT .* AS (\w+)$/i.exec(text)?.[1] ?? '';
    const one = (value: unknown): Row[] => [{ [column]: value }];
    if (/^SELECT GET_LOCK\(\?, \?\) AS \w+$/i.test(text)) {
      return async ([name, timeout]) => one(await this.#getLock(String(name), timeout));
    }
    if (/^SELECT RELEASE_LOCK\(\?\) AS \w+$/i.test(text)) {
      return ([name]) => one(this.server.releaseLock(this, checkedName(String(name))));
    }
    if (/^SELECT RELEASE_ALL_LOCKS\(\) AS \w+$/i.test(text)) {
      return () => one(this.server.releaseAll(this));
    }
    if (/^SELECT IS_USED_LOCK\(\?\) AS \w+$/i.test(text)) {
      return ([name]) => one(this.server.holderOf(checkedName(String(name))) ?? null);
    }
    if (/^SELECT VERSION\(\) AS \w+$/i.test(text)) return () => one(SCRIPTED_MYSQL8_VERSION);
    if (/^SELECT CONNECTION_ID\(\) AS \w+$/i.test(text)) return () => one(this.connectionId);
    if (
      /\(SELECT IS_USED_LOCK\(\?\) AS id\) h LEFT JOIN information_schema\.PROCESSLIST/i.test(text)
    ) {
      return ([name]) => [processlistRow(this.server.holderOf(checkedName(String(name))))];
    }
    if (/FROM information_schema\.PROCESSLIST p WHERE p\.STATE = 'User lock'/i.test(text)) {
      return ([name]) =>
        this.server
          .waitersFor(String(name))
          .filter((id) => id !== this.connectionId)
          .map((id) => ({ ...processlistRow(id), command: 'User lock' }));
    }
    return () => {
      throw new Error(`The scripted MySQL 8 stand-in does not know this statement: ${text}`);
    };
  }

  async #getLock(name: string, timeout: unknown): Promise<0 | 1> {
    const scripted = this.#failNextGetLock;
    this.#failNextGetLock = undefined;
    if (scripted) throw scripted();
    return this.server.getLock(this, checkedName(name), timeout);
  }
}

function checkedName(name: string): string {
  if (name.length === 0 || Array.from(name).length > NAME_CHAR_LEN) throw wrongName(name);
  return name;
}

/** The inspection's row: IS_USED_LOCK's holder joined with its PROCESSLIST row. */
function processlistRow(id: number | undefined): Row {
  if (id === undefined) {
    return { id: null, user: null, host: null, db: null, command: null, seconds: null };
  }
  return { id, user: 'root', host: 'localhost', db: 'test', command: 'Sleep', seconds: 0 };
}
