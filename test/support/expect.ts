import { expect } from 'chai';

/** Awaits `promise` and asserts it rejects with an error whose `code` is `code`; returns it. */
export async function expectRejectCode(promise: Promise<unknown>, code: string): Promise<Error> {
  let outcome: unknown;
  try {
    outcome = await promise;
  } catch (err) {
    expect(err).to.have.property('code', code);
    return err as Error;
  }
  expect.fail(`expected a rejection with ${code}, got ${String(outcome)}`);
}

/** Asserts `fn` throws synchronously an error whose `code` is `code`. */
export function expectThrowCode(fn: () => unknown, code: string): Error {
  try {
    fn();
  } catch (err) {
    expect(err).to.have.property('code', code);
    return err as Error;
  }
  expect.fail(`expected ${code} to be thrown`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Collects process warnings with `code` while `fn` runs. */
export async function captureWarnings(code: string, fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const listener = (warning: Error & { code?: string }) => {
    if (warning.code === code) seen.push(warning.message);
  };
  process.on('warning', listener);
  try {
    await fn();
    // process.emitWarning emits on the next tick: by the next macrotask every warning is in.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return seen;
}

/** Resolves with the abort reason once `signal` aborts, or rejects after `ms`. */
export function abortedWithin(signal: AbortSignal, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason);
    const timer = setTimeout(() => reject(new Error(`signal did not abort within ${ms} ms`)), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });
}

/** A try, a wait and a timed acquire of `lock`'s key, each expected to win and released. */
export async function acquireEachWay(lock: {
  acquire(options?: { block?: boolean; timeout?: number }): Promise<boolean>;
  release(): Promise<void>;
}): Promise<void> {
  for (const options of [{ block: false }, {}, { timeout: 1_000 }]) {
    expect(await lock.acquire(options), JSON.stringify(options)).to.equal(true);
    await lock.release();
  }
}
