/**
 * Statements the library sends through a knex target, reported the way knex reports its own:
 * the knex client's 'query', 'query-response' and 'query-error' events (which knex forwards to
 * the transaction and the knex instance) and the `knex:query` debug namespace. Loggers that
 * listen to knex then show lock activity too; each event object carries `source: 'knex-dlock'`.
 */
import { randomUUID } from 'node:crypto';
import createDebug from 'debug';
import type { Row, SiblingSession, SqlSession } from './types.js';

const knexQueryDebug = createDebug('knex:query');

/** The event side of a knex client. */
export interface KnexEventClient {
  emit(event: string, ...args: unknown[]): boolean;
  listenerCount?(event: string): number;
}

/** The event side of a knex instance, and the forwarders it put on its client. */
interface KnexEventInstance {
  readonly client: KnexEventClient;
  listenerCount?(event: string): number;
  readonly _internalListeners?: readonly { readonly eventName: string }[];
}

const REPORTED = ['query', 'query-response', 'query-error'] as const;

/** Whether anything hears a statement reported on a session: decided per statement. */
export type Heard = () => boolean;

export const ALWAYS_HEARD: Heard = () => true;

/**
 * Whether anyone listens to the statements of a knex instance: the `knex:query` debug
 * namespace, a listener on the instance, or one on its client beyond the forwarders knex put
 * there itself. When nobody does, building and emitting the events is skipped (several µs of
 * CPU per cycle). Transactions forward through listeners of their own, so their statements are
 * always reported.
 */
export function heardThrough(knex: KnexEventInstance): Heard {
  return () => {
    if (knexQueryDebug.enabled) return true;
    const internal = knex._internalListeners ?? [];
    for (const event of REPORTED) {
      if ((knex.listenerCount?.(event) ?? 1) > 0) return true;
      let forwarders = 0;
      for (const listener of internal) if (listener.eventName === event) forwarders += 1;
      if ((knex.client.listenerCount?.(event) ?? forwarders + 1) > forwarders) return true;
    }
    return false;
  };
}

/** The ids knex keeps on a connection it manages. */
interface KnexConnectionIds {
  readonly __knexUid?: unknown;
  readonly __knexTxId?: unknown;
}

/** `session`, with each statement reported on `client`. */
export class KnexReportedSession implements SqlSession {
  constructor(
    readonly inner: SqlSession,
    readonly client: KnexEventClient,
    readonly heard: Heard = ALWAYS_HEARD,
  ) {}

  get connection(): object {
    return this.inner.connection;
  }

  get memo(): Map<symbol, unknown> {
    return this.inner.memo;
  }

  get watchCommandTags(): SqlSession['watchCommandTags'] {
    return this.inner.watchCommandTags;
  }

  get serverId(): number | undefined {
    return this.inner.serverId;
  }

  get serverVersion(): string | undefined {
    return this.inner.serverVersion;
  }

  get requestCancel(): SqlSession['requestCancel'] {
    return this.inner.requestCancel;
  }

  get ping(): SqlSession['ping'] {
    return this.inner.ping;
  }

  async query(sql: string, params?: readonly unknown[], name?: string): Promise<Row[][]> {
    if (!this.heard()) return this.inner.query(sql, params, name);
    const { __knexUid, __knexTxId } = this.connection as KnexConnectionIds;
    const event = {
      __knexUid,
      __knexTxId,
      __knexQueryUid: randomUUID(),
      method: 'raw',
      sql,
      bindings: params ?? [],
      source: 'knex-dlock',
    };
    this.client.emit('query', event);
    // As knex does, with `%` escaped; only formatted when the namespace is on.
    if (knexQueryDebug.enabled) knexQueryDebug(sql.replace(/%/g, '%%'), __knexTxId);
    let results: Row[][];
    try {
      results = await this.inner.query(sql, params, name);
    } catch (err) {
      this.client.emit('query-error', err, event);
      throw err;
    }
    this.client.emit('query-response', results[results.length - 1] ?? [], event, undefined);
    return results;
  }

  inTransaction(): boolean {
    return this.inner.inTransaction();
  }

  openSibling(): Promise<SiblingSession> {
    return this.inner.openSibling();
  }
}
