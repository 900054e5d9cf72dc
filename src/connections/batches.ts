import type { BatchItem, Dialect, Grant, LockMode, Wait } from '../dialects/dialect.js';
import type { SqlSession } from '../drivers/types.js';
import { behindPooler } from './pinned.js';

const TRY: Wait = { kind: 'try' };

interface Queued<T> {
  readonly dialect: Dialect<unknown>;
  readonly item: BatchItem<unknown>;
  resolve(value: T | Promise<T>): void;
  reject(err: unknown): void;
}

interface QueuedTry extends Queued<Grant | false> {
  readonly cancelled: () => boolean;
}

type QueuedRelease = Queued<boolean>;

/** The queued requests by dialect (one, but for locks with and without prepared statements). */
function byDialect<T extends Queued<unknown>>(queued: readonly T[]): T[][] {
  const first = queued[0]?.dialect;
  if (queued.every((request) => request.dialect === first))
    return queued.length ? [[...queued]] : [];
  const groups = new Map<Dialect<unknown>, T[]>();
  for (const request of queued) {
    const group = groups.get(request.dialect);
    if (group) group.push(request);
    else groups.set(request.dialect, [request]);
  }
  return [...groups.values()];
}

/**
 * The tries and releases of one lock connection, in as few statements as they allow: requests
 * made while a statement of theirs runs gather, and go as one statement (per kind) when it
 * ends; a request with nothing running goes at once, with those made in the same turn of the
 * job queue (one quiet microtask). A lone request never waits for company, and costs what it
 * cost unbatched: it runs the dialect's single statement.
 *
 * Each caller gets its own answer: a busy key is false for its caller alone, a fenced grant
 * whose token cannot be taken fails its caller alone, and a batch that fails as a whole, with
 * what it took undone, runs each try on its own. A batch of releases that fails rejects every
 * caller of it, as a failed release does: the connection is then closed, which frees the locks.
 */
export class StatementBatches {
  readonly #tries: QueuedTry[] = [];
  readonly #releases: QueuedRelease[] = [];
  #running = false;
  #scheduled = false;
  #arrivals = 0;

  constructor(readonly session: SqlSession) {}

  /** A try of `key`, which the session does not hold; resolves false if busy. */
  try<Key>(
    dialect: Dialect<Key>,
    key: Key,
    mode: LockMode,
    cancelled: () => boolean,
  ): Promise<Grant | false> {
    if (!this.#batches(dialect, mode))
      return dialect.acquire(this.session, key, mode, TRY, cancelled);
    return new Promise((resolve, reject) => {
      this.#tries.push({
        dialect: dialect as Dialect<unknown>,
        item: { key, mode },
        cancelled,
        resolve,
        reject,
      });
      this.#arrived();
    });
  }

  /** A release of `key`; resolves whether the session held it. */
  release<Key>(dialect: Dialect<Key>, key: Key, mode: LockMode): Promise<boolean> {
    if (!this.#batches(dialect, mode)) return dialect.release(this.session, key, mode);
    return new Promise((resolve, reject) => {
      this.#releases.push({
        dialect: dialect as Dialect<unknown>,
        item: { key, mode },
        resolve,
        reject,
      });
      this.#arrived();
    });
  }

  #batches(dialect: Dialect<unknown>, mode: LockMode): boolean {
    // Behind a pooler the pin's transaction would abort with a failed batch, and every hold with it.
    return (
      dialect.batching?.batches(mode) === true &&
      !behindPooler(this.session) &&
      !this.session.inTransaction()
    );
  }

  #arrived(): void {
    this.#arrivals += 1;
    if (this.#running || this.#scheduled) return;
    this.#scheduled = true;
    this.#whenQuiet(this.#arrivals);
  }

  /** Flushes once a microtask passes without another request. */
  #whenQuiet(seen: number): void {
    queueMicrotask(() => {
      if (this.#arrivals !== seen) return this.#whenQuiet(this.#arrivals);
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#running = true;
    const releases = this.#releases.splice(0);
    const tries: QueuedTry[] = [];
    for (const request of this.#tries.splice(0)) {
      // Given up before it was sent: it takes nothing.
      if (request.cancelled()) request.resolve(false);
      else tries.push(request);
    }
    await Promise.all([
      ...byDialect(releases).map((group) => this.#releaseAll(group)),
      ...byDialect(tries).map((group) => this.#tryAll(group)),
    ]);
    this.#running = false;
    if (this.#tries.length > 0 || this.#releases.length > 0) void this.#flush();
  }

  async #tryAll(group: QueuedTry[]): Promise<void> {
    const { dialect } = group[0]!;
    if (group.length > 1) {
      try {
        const answers = await dialect.batching!.tryAll(
          this.session,
          group.map((r) => r.item),
        );
        if (answers) return group.forEach((request, i) => request.resolve(answers[i]!));
      } catch (err) {
        return group.forEach((request) => request.reject(err));
      }
    }
    // Alone, or after a batch that failed as a whole and took nothing: each on its own.
    await Promise.all(
      group.map(({ item, cancelled, resolve, reject }) =>
        dialect.acquire(this.session, item.key, item.mode, TRY, cancelled).then(resolve, reject),
      ),
    );
  }

  async #releaseAll(group: QueuedRelease[]): Promise<void> {
    const { dialect } = group[0]!;
    if (group.length === 1) {
      const { item, resolve, reject } = group[0]!;
      return dialect.release(this.session, item.key, item.mode).then(resolve, reject);
    }
    try {
      const released = await dialect.batching!.releaseAll(
        this.session,
        group.map((r) => r.item),
      );
      group.forEach((request, i) => request.resolve(released[i]!));
    } catch (err) {
      group.forEach((request) => request.reject(err));
    }
  }
}
