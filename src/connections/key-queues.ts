import type { Hold, LockRequest } from './strategy.js';

/** Waits in the database for one request; the queue runs one at a time per key. */
type WaitInDatabase = (
  request: LockRequest<unknown>,
  id: string,
  deadline: number | undefined,
) => Promise<Hold | undefined>;

interface Waiter {
  readonly request: LockRequest<unknown>;
  readonly deadline: number | undefined;
  /** The first of its queue: it waits in the database, which honours its timeout and signal. */
  head: boolean;
  settled: boolean;
  settle(outcome: () => void): void;
  resolve(hold: Hold | undefined): void;
  reject(err: unknown): void;
}

/**
 * Blocking acquires of one process queue here per key, first come first served, and only the
 * first of each queue waits in the database. Once it holds the lock, the next one starts its own
 * database wait, so the lock is released in the database between two local holders and waiters
 * of other processes get their turn. A queued waiter gives up on its own timeout or signal.
 */
export class KeyQueues {
  readonly #queues = new Map<string, Waiter[]>();

  constructor(readonly waitInDatabase: WaitInDatabase) {}

  has(id: string): boolean {
    return this.#queues.has(id);
  }

  /** Waiters behind the first of their queue, in all queues. */
  get size(): number {
    let size = 0;
    for (const queue of this.#queues.values()) {
      for (const waiter of queue) if (!waiter.head && !waiter.settled) size += 1;
    }
    return size;
  }

  enqueue(
    request: LockRequest<unknown>,
    id: string,
    deadline: number | undefined,
  ): Promise<Hold | undefined> {
    return new Promise<Hold | undefined>((resolve, reject) => {
      const { signal } = request;
      if (signal.aborted) return reject(signal.reason);
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        if (!waiter.head) waiter.settle(() => reject(signal.reason));
      };
      const waiter: Waiter = {
        request,
        deadline,
        head: false,
        settled: false,
        resolve,
        reject,
        settle(outcome) {
          if (this.settled) return;
          this.settled = true;
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          outcome();
        },
      };
      if (deadline !== undefined) {
        timer = setTimeout(
          () => !waiter.head && waiter.settle(() => resolve(undefined)),
          Math.max(0, deadline - performance.now()),
        );
      }
      signal.addEventListener('abort', onAbort, { once: true });
      let queue = this.#queues.get(id);
      if (!queue) {
        queue = [];
        this.#queues.set(id, queue);
      }
      queue.push(waiter);
      if (queue.length === 1) void this.#run(id, queue);
    });
  }

  async #run(id: string, queue: Waiter[]): Promise<void> {
    while (queue.length > 0) {
      const waiter = queue[0]!;
      if (!waiter.settled) {
        waiter.head = true;
        try {
          const hold = await this.waitInDatabase(waiter.request, id, waiter.deadline);
          waiter.settle(() => waiter.resolve(hold));
        } catch (err) {
          waiter.settle(() => waiter.reject(err));
        }
      }
      queue.shift();
    }
    this.#queues.delete(id);
  }
}
