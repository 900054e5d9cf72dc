/**
 * The lock's state machine (idle, acquiring, held, releasing, lost) on a scripted connection
 * strategy: every transition, with the strategy's answers chosen by the test instead of raced
 * against a server. No database: the suite fails if anything in it opens a connection.
 */
import net from 'node:net';
import { expect } from 'chai';
import type { LockMode } from '../../src/dialects/dialect.js';
import { databaseError, LockTimeoutError, type LockLostError } from '../../src/errors.js';
import { BaseLock, type LockParts } from '../../src/lock/base-lock.js';
import { captureWarnings, expectRejectCode } from '../support/expect.js';
import {
  scriptedDialect,
  ScriptedStrategy,
  type ScriptedHold,
} from '../support/scripted-strategy.js';

/** BaseLock is abstract and its constructor internal: the smallest lock there can be. */
class TestLock extends BaseLock<string> {
  constructor(parts: LockParts<string>) {
    super(parts);
  }
}

/** A lock mode: every flag off unless given, so that a new flag needs one edit here. */
function mode(flags: Partial<LockMode> = {}): LockMode {
  return { shared: false, xact: false, ...flags };
}

const KEY = 'unit-key';

function lockOn(
  strategy: ScriptedStrategy,
  parts: Partial<Omit<LockParts<string>, 'strategy'>> = {},
): TestLock {
  return new TestLock({
    strategy,
    dialect: scriptedDialect,
    key: KEY,
    actualKey: KEY,
    mode: mode(),
    ...parts,
  });
}

/** A lock that holds already, with the hold the strategy granted. */
async function heldLock(
  parts: Partial<Omit<LockParts<string>, 'strategy'>> = {},
  options: { inTransaction?: boolean } = {},
): Promise<{ lock: TestLock; strategy: ScriptedStrategy; hold: ScriptedHold }> {
  const strategy = new ScriptedStrategy(options).answer('granted');
  const lock = lockOn(strategy, parts);
  expect(await lock.acquire()).to.equal(true);
  return { lock, strategy, hold: strategy.lastCall.hold! };
}

describe('lock state machine, on a scripted strategy (no database)', () => {
  let connects = 0;
  const connect = net.Socket.prototype.connect;

  before(() => {
    net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
      connects += 1;
      return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
    } as typeof connect;
  });

  after(() => {
    net.Socket.prototype.connect = connect;
    expect(connects, 'connections opened by a database-free suite').to.equal(0);
  });

  describe('acquire and release', () => {
    it('goes idle → acquiring → held → releasing → idle, and can be taken again', async () => {
      const strategy = new ScriptedStrategy().answer('waits');
      const lock = lockOn(strategy);
      expect([lock.locked, lock.signal]).to.deep.equal([false, undefined]);

      const acquiring = lock.acquire({ timeout: 1_000 });
      expect(strategy.calls).to.have.length(1);
      const { request } = strategy.lastCall;
      expect(request.key).to.equal(KEY);
      expect(request.mode).to.deep.equal(mode());
      expect(request.wait).to.deep.equal({ kind: 'timed', ms: 1_000 });
      expect(request.owner).to.equal(lock);
      expect(request.signal.aborted).to.equal(false);
      // Acquiring: not held, not releasable, not acquirable again.
      expect([lock.locked, lock.signal]).to.deep.equal([false, undefined]);
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      await expectRejectCode(lock.acquire(), 'ERR_DLOCK_ALREADY_HELD');
      expect(strategy.calls).to.have.length(1);

      const hold = strategy.lastCall.grant();
      expect(await acquiring).to.equal(true);
      // Held: watched, with a live signal.
      expect(lock.locked).to.equal(true);
      expect(lock.signal?.aborted).to.equal(false);
      expect(hold.watchers).to.equal(1);

      hold.answerRelease('waits');
      const releasing = lock.release();
      // Releasing: the unlock is out; neither held nor acquirable.
      expect(hold.calls).to.deep.equal(['release']);
      expect(lock.locked).to.equal(false);
      await expectRejectCode(lock.acquire(), 'ERR_DLOCK_ALREADY_HELD');
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      expect(hold.calls).to.deep.equal(['release']);

      hold.settleRelease('released');
      await releasing;
      // Idle: nothing watched any more.
      expect([lock.locked, lock.signal]).to.deep.equal([false, undefined]);
      expect(hold.watchers).to.equal(0);

      strategy.answer('granted');
      expect(await lock.acquire()).to.equal(true);
      expect(strategy.calls).to.have.length(2);
      await lock.release();
      expect(lock.locked).to.equal(false);
    });

    it('a busy answer resolves false and leaves the lock idle', async () => {
      const strategy = new ScriptedStrategy().answer('busy', 'granted');
      const lock = lockOn(strategy);
      expect(await lock.acquire({ block: false })).to.equal(false);
      expect(strategy.lastCall.request.wait).to.deep.equal({ kind: 'try' });
      expect([lock.locked, lock.signal]).to.deep.equal([false, undefined]);
      expect(await lock.acquire()).to.equal(true);
      expect(strategy.lastCall.request.wait).to.deep.equal({ kind: 'forever' });
    });

    it('acquire() on a held lock rejects with ERR_DLOCK_ALREADY_HELD and asks the strategy nothing', async () => {
      const { lock, strategy, hold } = await heldLock();
      await expectRejectCode(lock.acquire({ block: false }), 'ERR_DLOCK_ALREADY_HELD');
      expect(strategy.calls).to.have.length(1);
      expect(lock.locked).to.equal(true);
      expect(hold.calls).to.deep.equal([]);
    });

    it('release() of a lock that is not held rejects with ERR_DLOCK_NOT_HELD, before and after a hold', async () => {
      const strategy = new ScriptedStrategy().answer('granted');
      const lock = lockOn(strategy);
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      await lock.acquire();
      const hold = strategy.lastCall.hold!;
      await lock.release();
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      expect(hold.calls).to.deep.equal(['release']);
    });

    it('a rejected acquire leaves the lock idle: a DlockError as it is, anything else as ERR_DLOCK_DATABASE', async () => {
      const typed = new LockTimeoutError('scripted');
      const untyped = new Error('socket hang up');
      const strategy = new ScriptedStrategy().answer({ rejects: typed }, { rejects: untyped });
      const lock = lockOn(strategy);
      let caught: unknown;
      await lock.acquire().catch((err: unknown) => (caught = err));
      expect(caught).to.equal(typed);
      const wrapped = await expectRejectCode(lock.acquire(), 'ERR_DLOCK_DATABASE');
      expect(wrapped.cause).to.equal(untyped);
      expect(lock.locked).to.equal(false);
      strategy.answer('granted');
      expect(await lock.acquire()).to.equal(true);
    });

    it('invalid acquire options reject with ERR_DLOCK_INVALID_OPTION and ask the strategy nothing', async () => {
      const strategy = new ScriptedStrategy();
      const lock = lockOn(strategy);
      for (const options of [{ timeout: NaN }, { block: 'no' }, { tiemout: 5 }]) {
        await expectRejectCode(lock.acquire(options as never), 'ERR_DLOCK_INVALID_OPTION');
      }
      expect(strategy.calls).to.deep.equal([]);
    });

    it('fencingToken is the hold’s token while held, undefined otherwise', async () => {
      const strategy = new ScriptedStrategy().answer({ token: 42n }, 'granted');
      const lock = lockOn(strategy);
      expect(lock.fencingToken).to.equal(undefined);
      await lock.acquire();
      expect(lock.fencingToken).to.equal(42n);
      await lock.release();
      expect(lock.fencingToken).to.equal(undefined);
      await lock.acquire();
      expect(lock.fencingToken, 'a grant without a token').to.equal(undefined);
    });
  });

  describe('aborts and close()', () => {
    it('an already aborted signal rejects with its reason without calling the strategy', async () => {
      const strategy = new ScriptedStrategy();
      const lock = lockOn(strategy);
      const reason = new Error('aborted before acquire');
      let caught: unknown;
      await lock.acquire({ signal: AbortSignal.abort(reason) }).catch((err) => (caught = err));
      expect(caught).to.equal(reason);
      expect(strategy.calls).to.deep.equal([]);
      expect(lock.locked).to.equal(false);
    });

    it('aborting while acquiring aborts the request with the same reason; the lock ends idle', async () => {
      const strategy = new ScriptedStrategy().answer('waits', 'granted');
      const lock = lockOn(strategy);
      const controller = new AbortController();
      const acquiring = lock.acquire({ signal: controller.signal });
      const reason = new Error('caller gave up');
      controller.abort(reason);
      let caught: unknown;
      await acquiring.catch((err: unknown) => (caught = err));
      expect(caught).to.equal(reason);
      expect(strategy.lastCall.request.signal.reason).to.equal(reason);
      expect(lock.locked).to.equal(false);
      expect(await lock.acquire()).to.equal(true);
    });

    it('close() while acquiring cancels it: acquire() rejects with ERR_DLOCK_NOT_HELD, nothing held', async () => {
      const strategy = new ScriptedStrategy().answer('waits');
      const lock = lockOn(strategy);
      const acquiring = lock.acquire();
      await lock.close();
      const err = await expectRejectCode(acquiring, 'ERR_DLOCK_NOT_HELD');
      expect(strategy.lastCall.request.signal.reason).to.equal(err);
      expect(strategy.lastCall.hold).to.equal(undefined);
      expect(lock.locked).to.equal(false);
    });

    it('close() of an idle lock does nothing; of a held lock releases it; of a lost lock makes it idle', async () => {
      const idle = new ScriptedStrategy();
      await lockOn(idle).close();
      expect(idle.calls).to.deep.equal([]);

      const { lock, hold } = await heldLock();
      await lock.close();
      expect(hold.calls).to.deep.equal(['release']);
      expect(lock.locked).to.equal(false);

      const lost = await heldLock();
      lost.hold.loseConnection(new Error('gone'));
      await lost.lock.close();
      // Idle again: nothing to release, not lost.
      await expectRejectCode(lost.lock.release(), 'ERR_DLOCK_NOT_HELD');
      expect(lost.lock.signal).to.equal(undefined);
    });

    it('Symbol.asyncDispose closes the lock', async () => {
      const { lock, hold } = await heldLock();
      await lock[Symbol.asyncDispose]();
      expect(hold.calls).to.deep.equal(['release']);
      expect(lock.locked).to.equal(false);
    });
  });

  describe('a lost connection', () => {
    it('while held: the signal aborts with ERR_DLOCK_LOST, onLost is called once, release() rejects until close()', async () => {
      const lost: LockLostError[] = [];
      const { lock, strategy, hold } = await heldLock({ onLost: (err) => lost.push(err) });
      const signal = lock.signal!;
      const cause = new Error('connection reset');
      hold.loseConnection(cause);

      expect(signal.aborted).to.equal(true);
      expect(signal.reason).to.have.property('code', 'ERR_DLOCK_LOST');
      expect((signal.reason as Error).cause).to.equal(cause);
      expect(lost).to.have.length(1);
      expect(lost[0]).to.equal(signal.reason);
      expect(hold.calls, 'its connection closed where the library may').to.deep.equal(['discard']);
      expect(hold.watchers).to.equal(0);
      expect(lock.locked).to.equal(false);
      expect(lock.signal).to.equal(signal);
      hold.loseConnection(new Error('and again'));
      expect(lost).to.have.length(1);

      await expectRejectCode(lock.release(), 'ERR_DLOCK_LOST');
      await expectRejectCode(lock.release(), 'ERR_DLOCK_LOST');
      await lock.close();
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      strategy.answer('granted');
      expect(await lock.acquire()).to.equal(true);
      expect(lock.signal?.aborted, 'a new hold has a new signal').to.equal(false);
    });

    it('a lost lock shows an aborted signal though nobody looked at it while held, and can be acquired again', async () => {
      const { lock, strategy, hold } = await heldLock();
      hold.loseConnection(new Error('gone'));
      expect(lock.signal?.reason).to.have.property('code', 'ERR_DLOCK_LOST');
      strategy.answer('granted');
      expect(await lock.acquire()).to.equal(true);
      expect(lock.locked).to.equal(true);
    });

    for (const ending of ['closed', 'rejects'] as const) {
      it(`while releasing: the release rejects with ERR_DLOCK_LOST (the unlock ${ending === 'closed' ? 'answered "closed"' : 'failed'})`, async () => {
        const lost: LockLostError[] = [];
        const { lock, hold } = await heldLock({ onLost: (err) => lost.push(err) });
        hold.answerRelease('waits');
        const releasing = lock.release();
        hold.loseConnection(new Error('gone'));
        expect(lost).to.have.length(1);
        const failure = new Error('unlock failed');
        hold.settleRelease(ending === 'closed' ? 'closed' : { rejects: failure });
        const err = await expectRejectCode(releasing, 'ERR_DLOCK_LOST');
        if (ending === 'rejects') expect(err.cause).to.equal(failure);
        expect(hold.calls).to.deep.equal(['release', 'discard']);
        expect(lock.locked).to.equal(false);
      });
    }
  });

  describe('release outcomes', () => {
    it('a release that fails leaves the lock held, and a later release works', async () => {
      const { lock, hold } = await heldLock();
      hold.answerRelease({ rejects: databaseError('Releasing the lock', new Error('timeout')) });
      await expectRejectCode(lock.release(), 'ERR_DLOCK_DATABASE');
      expect(lock.locked).to.equal(true);
      expect(lock.signal?.aborted).to.equal(false);
      expect(hold.watchers).to.equal(1);
      await lock.release();
      expect(lock.locked).to.equal(false);
      expect(hold.calls).to.deep.equal(['release', 'release']);
    });

    it('a database that no longer held the lock: ERR_DLOCK_NOT_HELD, and the lock is idle', async () => {
      const { lock, hold } = await heldLock();
      hold.answerRelease('not-held');
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
      expect(lock.locked).to.equal(false);
      expect(hold.watchers).to.equal(0);
    });

    it('an unlock that failed and closed the connection (which freed the lock) is a release', async () => {
      const lost: LockLostError[] = [];
      const { lock, hold } = await heldLock({ onLost: (err) => lost.push(err) });
      hold.answerRelease('closed');
      await lock.release();
      expect(lock.locked).to.equal(false);
      expect(lost).to.deep.equal([]);
    });
  });

  describe('transactions', () => {
    it('a transaction-level lock: release() and close() warn or do nothing; it ends with the transaction', async () => {
      const { lock, hold } = await heldLock(
        { mode: mode({ xact: true }) },
        { inTransaction: true },
      );
      const warnings = await captureWarnings('DLOCK_XACT_RELEASE', () => lock.release());
      expect(warnings).to.have.length(1);
      await lock.close();
      expect(lock.locked).to.equal(true);
      expect(hold.calls).to.deep.equal([]);

      const atEnd = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () =>
        hold.endTransaction(),
      );
      expect(atEnd).to.deep.equal([]);
      expect(lock.locked).to.equal(false);
      expect(hold.calls, 'the connection let go without an unlock').to.deep.equal(['forget']);
      expect(hold.watchers).to.equal(0);
      await expectRejectCode(lock.release(), 'ERR_DLOCK_NOT_HELD');
    });

    it('a session lock still held when its transaction ends is released then, with a warning', async () => {
      const { lock, hold } = await heldLock({}, { inTransaction: true });
      const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () =>
        hold.endTransaction(),
      );
      expect(warnings).to.have.length(1);
      expect(hold.calls).to.deep.equal(['release']);
      expect(lock.locked).to.equal(false);
      expect(hold.watchers).to.equal(0);
    });

    it('a session lock released before its transaction ends gives no warning', async () => {
      const { lock, hold } = await heldLock({}, { inTransaction: true });
      await lock.release();
      const warnings = await captureWarnings('DLOCK_RELEASED_AT_TRANSACTION_END', async () =>
        hold.endTransaction(),
      );
      expect(warnings).to.deep.equal([]);
      expect(hold.calls).to.deep.equal(['release']);
    });
  });
});
