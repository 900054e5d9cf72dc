/**
 * The raw driver as a careful user writes it, on a connection kept for the whole run: the
 * baselines of the acquire + release questions, and the floor under them (two bare round trips).
 *
 * - PostgreSQL: named (prepared) statements through `client.query({ name, text, values })`,
 *   parsed once per connection and then only bound and executed.
 * - MySQL / MariaDB: mysql2's `query` (text, escaped client-side) and `execute` (a prepared
 *   statement, cached per connection) are both measured; the faster one is the baseline.
 */
import type { Pinned } from './targets.js';
import type { Contender } from './runner.js';

/** One statement as a driver call: what the raw contenders and the replays send. */
export interface DriverCall {
  /** mysql2's method; pg has only `query`. */
  readonly method: 'query' | 'execute';
  readonly text: string;
  readonly values?: readonly unknown[];
  /** pg: the name under which the connection prepares the statement. */
  readonly name?: string;
}

export type MysqlMethod = 'query' | 'execute';

/** What `GET_LOCK` reads as "wait forever" on both MySQL and MariaDB (which refuses negatives). */
const FOREVER_SECONDS = 4294967295;

type Row = Record<string, unknown>;

/** Sends one call on the kept connection; resolves its rows. */
export async function send(pinned: Pinned, call: DriverCall): Promise<Row[]> {
  if (pinned.database === 'pg') {
    const values = call.values as unknown[] | undefined;
    const result = await pinned.client.query({ name: call.name, text: call.text, values });
    return result.rows as Row[];
  }
  const { conn } = pinned;
  return new Promise<Row[]>((resolve, reject) => {
    const done = (err: Error | null, rows: unknown) => (err ? reject(err) : resolve(rows as Row[]));
    const values = [...(call.values ?? [])] as (string | number | bigint)[];
    if (call.method === 'execute') conn.execute(call.text, values, done);
    else conn.query(call.text, values, done);
  });
}

/** The first column of the first row, as a careful user checks a lock function's answer. */
function answer(rows: readonly Row[]): unknown {
  const row = rows[0];
  return row === undefined ? undefined : Object.values(row)[0];
}

function loop(name: string, calls: readonly DriverCall[], pinned: Pinned): Contender {
  return {
    name,
    async batch(n) {
      for (let i = 0; i < n; i += 1) {
        for (const call of calls) await send(pinned, call);
      }
    },
  };
}

/**
 * Lock + unlock, each checked: `wait` is the blocking call (`pg_advisory_lock`, `GET_LOCK`
 * waiting forever), `try` the try-lock (`pg_try_advisory_lock`, `GET_LOCK(?, 0)`).
 */
export function rawLockCycle(
  pinned: Pinned,
  key: bigint | string,
  attempt: 'wait' | 'try',
  method: MysqlMethod = 'query',
): Contender {
  const [lock, unlock] = lockCalls(pinned, key, attempt, method);
  const name =
    pinned.database === 'pg'
      ? `raw: named ${attempt === 'try' ? 'pg_try_' : 'pg_'}advisory_lock + pg_advisory_unlock`
      : `raw: mysql2 ${method}, GET_LOCK(?, ${attempt === 'try' ? '0' : '?'}) + RELEASE_LOCK`;
  const acquired = pinned.database === 'pg' ? true : 1;
  return {
    name,
    async batch(n) {
      for (let i = 0; i < n; i += 1) {
        const got = answer(await send(pinned, lock));
        // The blocking pg call answers nothing (void); everything else says whether it locked.
        if (got !== acquired && !(pinned.database === 'pg' && attempt === 'wait')) {
          throw new Error(`${name}: the lock was not acquired (${String(got)})`);
        }
        if (answer(await send(pinned, unlock)) !== acquired) {
          throw new Error(`${name}: the lock was not released`);
        }
      }
    },
  };
}

/** The raw baselines of one lock cycle: pg's named statements, or mysql2's query and execute. */
export function rawContenders(
  pinned: Pinned,
  key: bigint | string,
  attempt: 'wait' | 'try',
): Contender[] {
  if (pinned.database === 'pg') return [rawLockCycle(pinned, key, attempt)];
  return [
    rawLockCycle(pinned, key, attempt, 'query'),
    rawLockCycle(pinned, key, attempt, 'execute'),
  ];
}

/**
 * Lock, fencing token, unlock, as a careful user writes them with the same token stores as the
 * library: on pg the token in the locking statement (`nextval` of `knex_dlock_fencing`, named);
 * on MySQL the counter's increment after `GET_LOCK`, read from the OK packet's insert id.
 */
export function rawFencedCycle(
  pinned: Pinned,
  key: bigint | string,
  attempt: 'wait' | 'try',
  method: MysqlMethod = 'query',
): Contender {
  const [lock, unlock] = lockCalls(pinned, key, attempt, method);
  const calls: DriverCall[] =
    pinned.database === 'pg'
      ? [
          {
            ...lock,
            name: `${lock.name!}_fenced`,
            text: `${lock.text}, nextval('knex_dlock_fencing')`,
          },
          unlock,
        ]
      : [
          lock,
          {
            method,
            text:
              'INSERT INTO knex_dlock_fencing (name, token) VALUES (?, LAST_INSERT_ID(1)) ' +
              'ON DUPLICATE KEY UPDATE token = LAST_INSERT_ID(token + 1)',
            values: [key],
          },
          unlock,
        ];
  const name =
    pinned.database === 'pg'
      ? `raw: named ${attempt === 'try' ? 'pg_try_' : 'pg_'}advisory_lock with nextval + unlock`
      : `raw: mysql2 ${method}, GET_LOCK + counter increment + RELEASE_LOCK`;
  return loop(name, calls, pinned);
}

/** {@link rawFencedCycle} as the baselines: pg's named statements, or mysql2's query and execute. */
export function rawFencedContenders(
  pinned: Pinned,
  key: bigint | string,
  attempt: 'wait' | 'try',
): Contender[] {
  if (pinned.database === 'pg') return [rawFencedCycle(pinned, key, attempt)];
  return [
    rawFencedCycle(pinned, key, attempt, 'query'),
    rawFencedCycle(pinned, key, attempt, 'execute'),
  ];
}

function lockCalls(
  pinned: Pinned,
  key: bigint | string,
  attempt: 'wait' | 'try',
  method: MysqlMethod,
): [DriverCall, DriverCall] {
  if (pinned.database === 'pg') {
    const fn = attempt === 'try' ? 'pg_try_advisory_lock' : 'pg_advisory_lock';
    return [
      { method: 'query', name: `bench_${fn}`, text: `SELECT ${fn}($1)`, values: [key] },
      {
        method: 'query',
        name: 'bench_pg_advisory_unlock',
        text: 'SELECT pg_advisory_unlock($1)',
        values: [key],
      },
    ];
  }
  return [
    attempt === 'try'
      ? { method, text: 'SELECT GET_LOCK(?, 0)', values: [key] }
      : { method, text: 'SELECT GET_LOCK(?, ?)', values: [key, FOREVER_SECONDS] },
    { method, text: 'SELECT RELEASE_LOCK(?)', values: [key] },
  ];
}

/** Both ways of sending a statement on this database: pg simple / named, mysql2 query / execute. */
export type FloorStyle = 'simple' | 'named' | MysqlMethod;

export function floorStyles(pinned: Pinned): FloorStyle[] {
  return pinned.database === 'pg' ? ['simple', 'named'] : ['query', 'execute'];
}

/** The physical limit of a lock cycle: two bare `SELECT 1` round trips on the same connection. */
export function bareRoundTrips(pinned: Pinned, style: FloorStyle): Contender {
  const call: DriverCall =
    style === 'simple' || style === 'named'
      ? {
          method: 'query',
          text: 'SELECT 1',
          name: style === 'named' ? 'bench_select_1' : undefined,
        }
      : { method: style, text: 'SELECT 1' };
  const how = style === 'simple' ? 'simple query' : style === 'named' ? 'named' : `mysql2 ${style}`;
  return loop(`floor: 2× SELECT 1, ${how}`, [call, call], pinned);
}

/**
 * The library's own statements of one cycle, sent by hand: a diagnostic, never a baseline.
 * `note` says what they cost the server ("2 round trips, 0 parses").
 */
export function replay(pinned: Pinned, calls: readonly DriverCall[], note: string): Contender {
  return loop(`diagnostic: library's SQL replayed (${note})`, calls, pinned);
}

/** Sends `calls` once, in order: sets a kept connection up as the library's first cycle did. */
export async function sendAll(pinned: Pinned, calls: readonly DriverCall[]): Promise<void> {
  for (const call of calls) await send(pinned, call);
}
