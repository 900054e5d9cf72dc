import { expect } from 'chai';
import { createLock, withLock } from '../src/index.js';
import { expectNothingSent } from './support/counting.js';
import { expectRejectCode, expectThrowCode } from './support/expect.js';
import { kindSuite, poolerOption } from './support/kind-suite.js';
import { TARGET_KINDS, uniqueKey } from './support/targets.js';

for (const kind of TARGET_KINDS) {
  describe(`lock contract on ${kind.name}`, function () {
    const suite = kindSuite(kind);
    const { open, lockOn } = suite;

    it('acquire() holds the lock in the database and release() frees it', async () => {
      const lock = lockOn(await open(), uniqueKey());
      expect(await lock.acquire()).to.equal(true);
      expect(lock.locked).to.equal(true);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
      await lock.release();
      expect(lock.locked).to.equal(false);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
    });

    it('two locks on different sessions exclude each other', async () => {
      const key = uniqueKey();
      const first = lockOn(await open(), key);
      const second = lockOn(await open(), key);
      expect(await first.acquire()).to.equal(true);
      expect(await second.acquire({ block: false })).to.equal(false);
      expect(await second.acquire({ timeout: 0 })).to.equal(false);
      await first.release();
      expect(await second.acquire({ block: false })).to.equal(true);
    });

    it('a waiting acquire() gets the lock as soon as the holder releases it', async () => {
      const key = uniqueKey();
      const holder = lockOn(await open(), key);
      const waiter = lockOn(await open(), key);
      await holder.acquire();
      const waiting = waiter.acquire();
      await suite.waits.waitFor(waiter.actualKey);
      expect(waiter.locked).to.equal(false);
      await holder.release();
      expect(await waiting).to.equal(true);
      expect(waiter.locked).to.equal(true);
    });

    it('a 300 ms timeout resolves false within 300-600 ms and holds nothing', async () => {
      const key = uniqueKey();
      const holder = lockOn(await open(), key);
      const waiter = lockOn(await open(), key);
      await holder.acquire();
      const started = performance.now();
      expect(await waiter.acquire({ timeout: 300 })).to.equal(false);
      const elapsed = performance.now() - started;
      expect(elapsed).to.be.within(290, 600);
      expect(waiter.locked).to.equal(false);
      await holder.release();
      expect(await suite.inspector.holders(holder.actualKey)).to.equal(0);
    });

    it('aborting a waiting acquire() rejects with the reason and leaves nothing held', async () => {
      const key = uniqueKey();
      const holder = lockOn(await open(), key);
      const waiter = lockOn(await open(), key);
      await holder.acquire();
      const controller = new AbortController();
      const waiting = waiter.acquire({ signal: controller.signal });
      await suite.waits.waitFor(waiter.actualKey);
      const reason = new Error('stop waiting');
      controller.abort(reason);
      let caught: unknown;
      await waiting.catch((err: unknown) => (caught = err));
      expect(caught).to.equal(reason);
      expect(waiter.locked).to.equal(false);
      // The wait is cancelled on the server too, so the release below can grant it nothing.
      await suite.waits.waitFor(waiter.actualKey, { count: 0 });
      await holder.release();
      expect(await suite.inspector.holders(holder.actualKey)).to.equal(0);
    });

    it('close() during a waiting acquire() cancels it: ERR_DLOCK_NOT_HELD, nothing held', async () => {
      const key = uniqueKey();
      const holder = lockOn(await open(), key);
      const waiter = lockOn(await open(), key);
      await holder.acquire();
      const waiting = waiter.acquire();
      await suite.waits.waitFor(waiter.actualKey);
      const started = performance.now();
      await waiter.close();
      await expectRejectCode(waiting, 'ERR_DLOCK_NOT_HELD');
      expect(performance.now() - started).to.be.below(1_000);
      expect(waiter.locked).to.equal(false);
      // The wait is cancelled on the server too, so the release below can grant it nothing.
      await suite.waits.waitFor(waiter.actualKey, { count: 0 });
      await holder.release();
      expect(await suite.inspector.holders(holder.actualKey)).to.equal(0);
      expect(await waiter.acquire({ block: false })).to.equal(true);
    });

    it('acquire() with an already aborted signal rejects before any query', async () => {
      const target = await open();
      const lock = lockOn(target, uniqueKey());
      const reason = new Error('already aborted');
      let caught: unknown;
      await expectNothingSent(target, () =>
        lock.acquire({ signal: AbortSignal.abort(reason) }).catch((err) => (caught = err)),
      );
      expect(caught).to.equal(reason);
      expect(lock.locked).to.equal(false);
    });

    it('release() on an unlocked lock throws ERR_DLOCK_NOT_HELD; close() does not', async () => {
      const lock = lockOn(await open(), uniqueKey());
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      await lock.close();
      await lock.acquire();
      await lock.close();
      expect(lock.locked).to.equal(false);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
    });

    if (kind.dialect === 'postgres') {
      it('shared locks overlap, and an exclusive lock waits for them', async () => {
        const key = uniqueKey();
        const readers = [0, 1].map(async () => lockOn(await open(), key, { shared: true }));
        const [first, second] = await Promise.all(readers);
        const writer = lockOn(await open(), key);
        expect(await first!.acquire()).to.equal(true);
        expect(await second!.acquire({ block: false })).to.equal(true);
        expect(await writer.acquire({ timeout: 50 })).to.equal(false);
        await first!.release();
        await second!.release();
        expect(await writer.acquire({ block: false })).to.equal(true);
      });
    } else {
      it('shared and xact locks throw ERR_DLOCK_INVALID_OPTION before any query', async () => {
        const target = await open();
        for (const options of [{ shared: true }, { xact: true }]) {
          await expectNothingSent(target, async () => {
            expectThrowCode(
              () => createLock(target, uniqueKey(), options),
              'ERR_DLOCK_INVALID_OPTION',
            );
          });
        }
      });
    }

    it('acquire() on a held lock throws ERR_DLOCK_ALREADY_HELD', async () => {
      const lock = lockOn(await open(), uniqueKey());
      await lock.acquire();
      await expectRejectCode(lock.acquire(), 'ERR_DLOCK_ALREADY_HELD');
      expect(lock.locked).to.equal(true);
    });

    it('a lock object can be acquired again after release()', async () => {
      const lock = lockOn(await open(), uniqueKey());
      for (let i = 0; i < 3; i += 1) {
        expect(await lock.acquire()).to.equal(true);
        await lock.release();
      }
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
    });

    it('Symbol.asyncDispose closes the lock', async () => {
      const lock = lockOn(await open(), uniqueKey());
      await lock.acquire();
      await lock[Symbol.asyncDispose]();
      expect(lock.locked).to.equal(false);
      expect(await suite.inspector.holders(lock.actualKey)).to.equal(0);
    });

    if (kind.pooled) {
      it('two locks on the same pool use different connections and exclude each other', async () => {
        const target = await open();
        const key = uniqueKey();
        const first = lockOn(target, key);
        const second = lockOn(target, key);
        expect(await first.acquire()).to.equal(true);
        expect(await second.acquire({ block: false })).to.equal(false);
        await first.release();
        expect(await second.acquire({ block: false })).to.equal(true);
      });
    } else {
      it('two lock objects on the same connection stack: each must be released', async () => {
        const target = await open();
        const key = uniqueKey();
        const first = lockOn(target, key);
        const second = lockOn(target, key);
        const other = lockOn(await open(), key);
        expect(await first.acquire()).to.equal(true);
        expect(await second.acquire({ block: false })).to.equal(true);
        await first.release();
        expect(await other.acquire({ block: false })).to.equal(false);
        await second.release();
        expect(await other.acquire({ block: false })).to.equal(true);
      });

      it('twenty locks stacked on one connection raise no listener-leak warning', async () => {
        const target = await open();
        const warnings: Error[] = [];
        const onWarning = (warning: Error) => {
          if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning);
        };
        process.on('warning', onWarning);
        try {
          const key = uniqueKey();
          const many = Array.from({ length: 20 }, () => lockOn(target, key));
          for (const lock of many) expect(await lock.acquire({ timeout: 5_000 })).to.equal(true);
          for (const lock of many) await lock.release();
          // Warnings are emitted on the next tick: by the next macrotask, any has arrived.
          await new Promise((resolve) => setImmediate(resolve));
        } finally {
          process.off('warning', onWarning);
        }
        expect(warnings).to.deep.equal([]);
      });
    }

    it('withLock() runs the callback while holding the lock and closes it after', async () => {
      const target = await open();
      const key = uniqueKey();
      let seen: bigint | string | undefined;
      const result = await withLock(
        target,
        key,
        async (lock, signal) => {
          expect(lock.locked).to.equal(true);
          expect(signal.aborted).to.equal(false);
          seen = lock.actualKey;
          expect(await suite.inspector.holders(lock.actualKey)).to.equal(1);
          return 42;
        },
        poolerOption(kind),
      );
      expect(result).to.equal(42);
      expect(await suite.inspector.holders(seen!)).to.equal(0);
    });

    it('withLock() closes the lock when the callback throws', async () => {
      const target = await open();
      const key = uniqueKey();
      let seen: bigint | string | undefined;
      const failure = new Error('callback failed');
      let caught: unknown;
      await withLock(
        target,
        key,
        (lock) => {
          seen = lock.actualKey;
          throw failure;
        },
        poolerOption(kind),
      ).catch((err) => (caught = err));
      expect(caught).to.equal(failure);
      expect(await suite.inspector.holders(seen!)).to.equal(0);
    });

    it('withLock() throws ERR_DLOCK_TIMEOUT when the lock stays held past the timeout', async () => {
      const key = uniqueKey();
      const holder = lockOn(await open(), key);
      await holder.acquire();
      let ran = false;
      await expectRejectCode(
        withLock(await open(), key, () => void (ran = true), {
          ...poolerOption(kind),
          timeout: 100,
        }),
        'ERR_DLOCK_TIMEOUT',
      );
      await expectRejectCode(
        withLock(await open(), key, () => void (ran = true), {
          ...poolerOption(kind),
          block: false,
        }),
        'ERR_DLOCK_TIMEOUT',
      );
      expect(ran).to.equal(false);
    });
  });
}
