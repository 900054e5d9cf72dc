/**
 * A connection strategy whose every answer the test scripts, to unit-test the lock's state
 * machine (src/lock.ts) without a database: acquires that are granted, busy, rejected, or left
 * waiting until their signal aborts; holds whose releases answer as told, whose connection can
 * be lost and whose transaction can end. It runs no SQL and opens no connection.
 */
import type {
  ConnectionStrategy,
  Hold,
  LockRequest,
  ReleaseOutcome,
} from '../../src/connections/strategy.js';
import type { Dialect } from '../../src/dialects/dialect.js';
import type { SqlSession } from '../../src/drivers/types.js';

/** How one acquire answers. */
export type AcquireAnswer =
  /** Resolves a hold. */
  | 'granted'
  /** Resolves a hold with this fencing token. */
  | { readonly token: bigint }
  /** Resolves undefined: held elsewhere, or the wait timed out. */
  | 'busy'
  /** Rejects with this. */
  | { readonly rejects: unknown }
  /**
   * Stays pending until the test answers it through its {@link AcquireCall}, or until the
   * request's signal aborts: it then rejects with the signal's reason, as strategies must.
   */
  | 'waits';

/** How one release answers; 'waits' stays pending until {@link ScriptedHold.settleRelease}. */
export type ReleaseAnswer = ReleaseOutcome | { readonly rejects: unknown } | 'waits';

/** What a hold was asked to do, in order. */
export type HoldCall = 'release' | 'forget' | 'discard';

const NO_SQL = 'a scripted strategy runs no SQL';

/**
 * The dialect handed to the lock. The lock only passes it on to the strategy, and a scripted
 * strategy never calls it: whatever would run SQL rejects. Cast, because only these members are
 * meaningful here and the interface grows with every database feature.
 */
export const scriptedDialect = {
  name: 'scripted',
  title: 'Scripted',
  describeKey: (key: string) => `scripted key ${key}`,
  acquire: () => Promise.reject(new Error(NO_SQL)),
  release: () => Promise.reject(new Error(NO_SQL)),
} as Partial<Dialect<string>> as Dialect<string>;

/** One call of the strategy's acquire, which the test can answer while it waits. */
export class AcquireCall {
  readonly request: LockRequest<unknown>;
  /** Resolves the hold, or undefined, or rejects: what the lock's acquire awaits. */
  readonly result: Promise<Hold | undefined>;
  /** The hold it resolved, once granted. */
  hold: ScriptedHold | undefined;
  #settled = false;
  #resolve!: (hold: Hold | undefined) => void;
  #reject!: (reason: unknown) => void;
  readonly #inTransaction: boolean;

  constructor(request: LockRequest<unknown>, inTransaction: boolean) {
    this.request = request;
    this.#inTransaction = inTransaction;
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Resolves a new hold (with `token`, if given) and returns it. */
  grant(token?: bigint): ScriptedHold {
    this.hold = new ScriptedHold(this.#inTransaction, token);
    this.#settle(() => this.#resolve(this.hold));
    return this.hold;
  }

  busy(): void {
    this.#settle(() => this.#resolve(undefined));
  }

  reject(reason: unknown): void {
    this.#settle(() => this.#reject(reason));
  }

  /** Rejects with the request's signal reason once that aborts. */
  rejectOnAbort(): void {
    const { signal } = this.request;
    const onAbort = () => this.reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }

  #settle(settle: () => void): void {
    if (this.#settled) throw new Error('this scripted acquire was answered already');
    this.#settled = true;
    settle();
  }
}

/** Strategy-wide settings of the holds it grants. */
export interface ScriptedOptions {
  /** The holds run inside a transaction: the session says so, and they report its end. */
  readonly inTransaction?: boolean;
}

export class ScriptedStrategy implements ConnectionStrategy {
  /** Every call of acquire(), in order. */
  readonly calls: AcquireCall[] = [];
  readonly #answers: AcquireAnswer[] = [];
  readonly #options: ScriptedOptions;

  constructor(options: ScriptedOptions = {}) {
    this.#options = options;
  }

  /** Queues how the next acquires answer, in order. An acquire with no answer queued fails. */
  answer(...answers: AcquireAnswer[]): this {
    this.#answers.push(...answers);
    return this;
  }

  /** The latest call of acquire(). */
  get lastCall(): AcquireCall {
    const call = this.calls.at(-1);
    if (!call) throw new Error('the strategy was not asked to acquire');
    return call;
  }

  acquire<Key>(request: LockRequest<Key>): Promise<Hold | undefined> {
    const call = new AcquireCall(request, this.#options.inTransaction ?? false);
    this.calls.push(call);
    const answer = this.#answers.shift();
    if (answer === undefined) call.reject(new Error('unscripted acquire: queue its answer first'));
    else if (answer === 'granted') call.grant();
    else if (answer === 'busy') call.busy();
    else if (answer === 'waits') call.rejectOnAbort();
    else if ('token' in answer) call.grant(answer.token);
    else call.reject(answer.rejects);
    return call.result;
  }
}

/** A hold on a scripted session; the test plays its connection and transaction. */
export class ScriptedHold implements Hold {
  readonly session: SqlSession;
  readonly token: bigint | undefined;
  /** What the lock asked of this hold, in order. */
  readonly calls: HoldCall[] = [];
  /** Defined only inside a transaction, as for the strategies' holds. */
  readonly onTransactionEnding?: (onEnding: () => void) => () => void;
  #inTransaction: boolean;
  readonly #releaseAnswers: ReleaseAnswer[] = [];
  #pendingRelease: ((answer: Exclude<ReleaseAnswer, 'waits'>) => void) | undefined;
  readonly #watchers = new Set<(cause: unknown) => void>();
  readonly #endings = new Set<() => void>();

  constructor(inTransaction: boolean, token: bigint | undefined) {
    this.#inTransaction = inTransaction;
    this.token = token;
    if (inTransaction) {
      this.onTransactionEnding = (onEnding) => {
        this.#endings.add(onEnding);
        return () => this.#endings.delete(onEnding);
      };
    }
    // The lock reads only inTransaction() (and serverId, for traces); the rest of SqlSession
    // serves dialects, which a scripted strategy never runs.
    const session: Partial<SqlSession> = {
      connection: this,
      memo: new Map(),
      serverId: 1,
      inTransaction: () => this.#inTransaction,
      query: () => Promise.reject(new Error(NO_SQL)),
    };
    this.session = session as SqlSession;
  }

  /** Queues how the next releases answer, in order; an unscripted release answers 'released'. */
  answerRelease(...answers: ReleaseAnswer[]): this {
    this.#releaseAnswers.push(...answers);
    return this;
  }

  /** Settles the release that was scripted to wait. */
  settleRelease(answer: Exclude<ReleaseAnswer, 'waits'>): void {
    const settle = this.#pendingRelease;
    if (!settle) throw new Error('no release is waiting');
    this.#pendingRelease = undefined;
    settle(answer);
  }

  /** How many callbacks watch the connection now. */
  get watchers(): number {
    return this.#watchers.size;
  }

  /** The connection fails: every watcher hears of it, as a driver's 'error' event would tell. */
  loseConnection(cause: unknown): void {
    for (const onLost of [...this.#watchers]) onLost(cause);
  }

  /** The transaction is about to end (COMMIT or ROLLBACK), then has ended. */
  endTransaction(): void {
    if (!this.#inTransaction) throw new Error('this hold is not in a transaction');
    for (const onEnding of [...this.#endings]) onEnding();
    this.#inTransaction = false;
  }

  release(): Promise<ReleaseOutcome> {
    this.calls.push('release');
    const answer = this.#releaseAnswers.shift() ?? 'released';
    if (answer === 'waits') {
      return new Promise((resolve, reject) => {
        this.#pendingRelease = (settled) =>
          typeof settled === 'string' ? resolve(settled) : reject(settled.rejects);
      });
    }
    return typeof answer === 'string' ? Promise.resolve(answer) : Promise.reject(answer.rejects);
  }

  forget(): void {
    this.calls.push('forget');
  }

  discard(): void {
    this.calls.push('discard');
  }

  watch(onLost: (cause: unknown) => void): () => void {
    this.#watchers.add(onLost);
    return () => this.#watchers.delete(onLost);
  }
}
