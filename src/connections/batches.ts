import type { BatchItem, Dialect, Grant, LockMode, Wait } from '../dialects/dialect.js';
import type { SqlSession } from '../drivers/types.js';
import { behindPooler } from './pinned.js';

const TRY: Wait = { kind: 'try' };
/**
 * Quiet microtasks before the batch that follows another: more than the continuations of a
 * caller take from one answer to its next request (acquire answered, release asked).
 */
const AFTER_BATCH_QUIET = 48;

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

/** Requests of one dialect (a target's locks may differ in `preparedStatements`). */
interface Group {
  readonly dialect: Dialect<unknown>;
  readonly releases: QueuedRelease[];
  readonly tries: QueuedTry[];
}

function groupsOf(releases: readonly QueuedRelease[], tries: readonly QueuedTry[]): Group[] {
  const groups = new Map<Dialect<unknown>, Group>();
  const groupOf = (dialect: Dialect<unknown>) => {
    let group = groups.get(dialect);
    if (!group) groups.set(dialect, (group = { dialect, releases: [], tries: [] }));
    return group;
  };
  for (const request of releases) groupOf(request.dialect).releases.push(request);
  for (const request of tries) groupOf(request.dialect).tries.push(request);
  return [...groups.values()];
}

/**
 * The tries and releases of one lock connection, in as few statements as they allow: requests
 * made while a statement of theirs runs gather, and go as one statement when it ends; a
 * request with nothing running goes at once, with those made in the same turn of the job
 * queue (it waits for one microtask without a new request). A lone request never waits for
 * company, and runs the dialect's single statement, as unbatched.
 *
 * Each caller gets its own answer: a busy key is false for its caller alone, a fenced grant
 * whose token cannot be taken fails its caller alone, and tries that fail as a whole, with
 * what they took undone, run again each on its own. When what the session holds can no longer
 * be told (the connection failed), every caller of the batch is rejected, as a failed single
 * statement would be: the connection is then closed, which frees its locks.
 */
export class StatementBatches {
  #tries: QueuedTry[] = [];
  #releases: QueuedRelease[] = [];
  #running = false;
  #scheduled = false;
  #arrivals = 0;

  constructor(readonly session: SqlSession) {}

  /** Whether a batch is running or gathering: a try now would have company. */
  get active(): boolean {
    return this.#running || this.#scheduled;
  }

  /** A try of `key`, which the session does not hold; resolves false if busy. */
  try<Key>(
    dialect: Dialect<Key>,
    key: Key,
    mode: LockMode,
    cancelled: () => boolean,
  ): Promise<Grant | false> {
    if (!this.#batches(dialect, mode)) {
      return dialect.acquire(this.session, key, mode, TRY, cancelled);
    }
    return new Promise((resolve, reject) => {
      const item = { key, mode };
      this.#tries.push({ dialect: dialect as Dialect<unknown>, item, cancelled, resolve, reject });
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
    // Behind a pooler, a failed batch would abort the pin's transaction, and every hold with it.
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

  /** Flushes once `quiet` microtasks in a row pass without another request. */
  #whenQuiet(seen: number, quiet = 1, left = quiet): void {
    queueMicrotask(() => {
      if (this.#arrivals !== seen) return this.#whenQuiet(this.#arrivals, quiet);
      if (left > 1) return this.#whenQuiet(seen, quiet, left - 1);
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#running = true;
    const releases = this.#releases;
    const tries: QueuedTry[] = [];
    for (const request of this.#tries) {
      // Given up before it was sent: it takes nothing.
      if (request.cancelled()) request.resolve(false);
      else tries.push(request);
    }
    this.#releases = [];
    this.#tries = [];
    const first = releases[0] ?? tries[0];
    if (first && releases.length + tries.length === 1) await this.#alone(first);
    else await Promise.all(groupsOf(releases, tries).map((group) => this.#run(group)));
    this.#running = false;
    // The callers just answered ask again once their continuations have run, some microtasks
    // on: the next batch waits for them a little longer, so that they join those that waited
    // for this one (a few microseconds, against the round trip those already waited).
    if (this.#tries.length > 0 || this.#releases.length > 0) {
      this.#scheduled = true;
      this.#whenQuiet(this.#arrivals, AFTER_BATCH_QUIET);
    }
  }

  /** A request with no company: the dialect's single statement. */
  #alone(request: QueuedTry | QueuedRelease): Promise<void> {
    const { dialect, item } = request;
    if ('cancelled' in request) {
      return dialect
        .acquire(this.session, item.key, item.mode, TRY, request.cancelled)
        .then(request.resolve, request.reject);
    }
    return dialect.release(this.session, item.key, item.mode).then(request.resolve, request.reject);
  }

  async #run({ dialect, releases, tries }: Group): Promise<void> {
    if (releases.length + tries.length === 1) return this.#alone(releases[0] ?? tries[0]!);
    let answers;
    try {
      answers = await dialect.batching!.run(
        this.session,
        releases.map((request) => request.item),
        tries.map((request) => request.item),
      );
    } catch (err) {
      for (const request of [...releases, ...tries]) request.reject(err);
      return;
    }
    releases.forEach((request, i) => request.resolve(answers.released[i]!));
    const { tried } = answers;
    if (tried) return tries.forEach((request, i) => request.resolve(tried[i]!));
    // The tries failed as a whole and took nothing: each runs on its own.
    await Promise.all(tries.map((request) => this.#alone(request)));
  }
}
