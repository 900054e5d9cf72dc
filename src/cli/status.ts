import { inspectLock, type LockHolder, type LockInspection } from '../api/inspect.js';
import type { Dialect } from '../dialects/dialect.js';
import { dialectModule, type DialectName } from '../dialects/registry.js';
import { slotKey } from '../api/semaphore/semaphore.js';
import { connect } from './connect.js';
import type { ConnectionSettings } from './connection-settings.js';
import type { Logger } from './log.js';

/** What `knex-dlock status` was asked to do, after parsing. */
export interface StatusSettings {
  readonly key: string;
  readonly connection: ConnectionSettings;
  readonly json: boolean;
  /** The key is a semaphore's of this many slots; undefined for a lock. */
  readonly max?: number | undefined;
}

/** The `--json` document: the inspection plus what was inspected. */
export interface StatusReport extends LockInspection {
  readonly key: string;
  readonly dialect: DialectName;
  /** The database key as the dialect names it, e.g. `PostgreSQL advisory key 42`. */
  readonly description: string;
  /** The database's key: a decimal int64 (PostgreSQL) or the lock name (MySQL). */
  readonly actualKey: string;
}

/** Prints who holds the lock; resolves 0 whether it is held or not. */
export async function printStatus(
  settings: StatusSettings,
  log: Logger,
  stdout: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const db = await connect(settings.connection, 'knex-dlock status');
  let text: string;
  let document: StatusReport | SemaphoreStatusReport;
  try {
    log.debug(`connected to ${db.description} (settings from ${settings.connection.source})`);
    if (settings.max === undefined) {
      const report = await reportOn(db.target, db.dialect, settings.key);
      [document, text] = [report, formatReport(report)];
    } else {
      const slots: StatusReport[] = [];
      for (let slot = 0; slot < settings.max; slot += 1) {
        slots.push(await reportOn(db.target, db.dialect, slotKey(settings.key, slot)));
      }
      const inUse = slots.filter((slot) => slot.held).length;
      document = { key: settings.key, dialect: db.dialect, max: settings.max, inUse, slots };
      text =
        `semaphore "${settings.key}" (max ${settings.max}): ${inUse} of ${settings.max} slots in use\n` +
        slots.map((slot, i) => `slot ${i}: ${formatReport(slot)}`).join('');
    }
  } finally {
    await db.close();
  }
  stdout.write(settings.json ? `${JSON.stringify(document, null, 2)}\n` : text);
  return 0;
}

/** The `--json` document of `status --max`: one report per slot. */
export interface SemaphoreStatusReport {
  readonly key: string;
  readonly dialect: DialectName;
  readonly max: number;
  /** How many slots are held. */
  readonly inUse: number;
  readonly slots: readonly StatusReport[];
}

async function reportOn(
  target: object,
  dialectName: DialectName,
  lockKey: string,
): Promise<StatusReport> {
  const inspection = await inspectLock(target, lockKey);
  const dialect = dialectModule(dialectName).dialect as Dialect<bigint | string>;
  const key = dialect.convertKey(lockKey);
  return {
    key: lockKey,
    dialect: dialectName,
    actualKey: key.toString(),
    description: dialect.describeKey(key),
    ...inspection,
  };
}

function formatReport(report: StatusReport): string {
  const what = `lock "${report.key}" (${report.description})`;
  const waiting = report.waiters.length;
  const waiters = waiting
    ? `${waiting} session${waiting === 1 ? '' : 's'} waiting\n` +
      report.waiters.map((waiter) => `  ${describeHolder(waiter)}\n`).join('')
    : '';
  if (!report.held) return `${what}: free\n${waiters}`;
  const count = report.holders.length;
  const lines = report.holders.map((holder) => `  ${describeHolder(holder)}`);
  return `${what}: held by ${count} session${count === 1 ? '' : 's'}\n${lines.join('\n')}\n${waiters}`;
}

/** An idle time for people: milliseconds under a second, else seconds with one decimal. */
function formatIdle(ms: number): string {
  return ms < 1_000 ? `${Math.round(ms)} ms` : `${(ms / 1_000).toFixed(1)} s`;
}

/** One line per holder, fields the database hid left out. */
function describeHolder(holder: LockHolder): string {
  const parts: string[] = [
    holder.mode.padEnd(9),
    `session ${holder.sessionId ?? '(prepared transaction)'}`,
  ];
  if (holder.applicationName) parts.push(`application ${JSON.stringify(holder.applicationName)}`);
  if (holder.clientAddress) parts.push(`client ${holder.clientAddress}`);
  if (holder.user) parts.push(`user ${holder.user}`);
  if (holder.database) parts.push(`database ${holder.database}`);
  if (holder.connectedAt) parts.push(`connected ${holder.connectedAt.toISOString()}`);
  if (holder.state) {
    const since = holder.stateSince ? ` since ${holder.stateSince.toISOString()}` : '';
    parts.push(`${holder.state}${since}`);
  }
  if (holder.idleFor !== null) parts.push(`idle ${formatIdle(holder.idleFor)}`);
  return parts.join('  ');
}

/** A short holder description for one-line messages. */
export function formatHolder(holder: LockHolder): string {
  const details = [holder.applicationName, holder.clientAddress].filter(Boolean).join(', ');
  const who = `session ${holder.sessionId ?? '(prepared transaction)'}`;
  return details ? `${who} (${details})` : who;
}
