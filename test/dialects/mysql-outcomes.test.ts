/**
 * The MySQL dialect's decisions that differ between MySQL and MariaDB, as pure functions: no
 * server needed. test/dialects/mysql8.test.ts runs the same behaviours against a server.
 */
import { expect } from 'chai';
import { mysqlName, timeoutSeconds } from '../../src/dialects/mysql/dialect.js';
import {
  getLockErrorOutcome,
  getLockValueOutcome,
  type GetLockOutcome,
} from '../../src/dialects/mysql/outcomes.js';
import { LockDatabaseError, LockDeadlockError } from '../../src/errors.js';
import { mysqlServerError } from '../support/scripted-mysql8-session.js';

const timed = (ms: number) => ({ kind: 'timed', ms }) as const;

const userLockDeadlock = mysqlServerError(3058, 'ER_USER_LOCK_DEADLOCK', 'HY000', 'Deadlock');
const lockDeadlock = mysqlServerError(1213, 'ER_LOCK_DEADLOCK', '40001', 'Deadlock');
const interrupted = mysqlServerError(1317, 'ER_QUERY_INTERRUPTED', '70100', 'interrupted');

function failure(outcome: GetLockOutcome): Error {
  if (outcome.kind !== 'failed') expect.fail(`expected a failure, got ${outcome.kind}`);
  return outcome.error;
}

describe('MySQL dialect: GET_LOCK timeouts per server (README: whole seconds, rounded up, on MySQL)', () => {
  it('a 1500 ms timeout is GET_LOCK(name, 2) on MySQL and GET_LOCK(name, 1.5) on MariaDB', () => {
    expect(timeoutSeconds(timed(1500), 'mysql')).to.equal(2);
    expect(timeoutSeconds(timed(1500), 'mariadb')).to.equal(1.5);
  });

  it('MySQL never waits less than asked: 1200 ms is 2 s (MySQL itself would read 1.2 as 1)', () => {
    expect(timeoutSeconds(timed(1200), 'mysql')).to.equal(2);
    expect(timeoutSeconds(timed(2000), 'mysql')).to.equal(2);
  });

  it('a sub-second wait on MySQL is 1 s, not 0 (MySQL would read 0.2 as 0: a try)', () => {
    expect(timeoutSeconds(timed(200), 'mysql')).to.equal(1);
    expect(timeoutSeconds(timed(1), 'mysql')).to.equal(1);
  });

  it('a server whose flavour the driver did not report gets MariaDB fractional seconds', () => {
    expect(timeoutSeconds(timed(1500), undefined)).to.equal(1.5);
  });
});

describe('MySQL dialect: what a failed GET_LOCK means', () => {
  it("MySQL's 3058 (ER_USER_LOCK_DEADLOCK) is a LockDeadlockError, ERR_DLOCK_DEADLOCK, cause kept", () => {
    for (const cancelled of [false, true]) {
      const error = failure(getLockErrorOutcome(userLockDeadlock, cancelled));
      expect(error).to.be.instanceOf(LockDeadlockError);
      expect(error).to.have.property('code', 'ERR_DLOCK_DEADLOCK');
      expect(error.cause).to.equal(userLockDeadlock);
    }
  });

  it("MariaDB's 1213 (ER_LOCK_DEADLOCK) is the same LockDeadlockError", () => {
    const error = failure(getLockErrorOutcome(lockDeadlock, false));
    expect(error).to.be.instanceOf(LockDeadlockError);
    expect(error.cause).to.equal(lockDeadlock);
  });

  it('1317 (ER_QUERY_INTERRUPTED) after a cancel this attempt asked for is "interrupted"', () => {
    expect(getLockErrorOutcome(interrupted, true)).to.deep.equal({ kind: 'interrupted' });
  });

  it('1317 that nobody here asked for is ERR_DLOCK_DATABASE with the server error as cause', () => {
    const error = failure(getLockErrorOutcome(interrupted, false));
    expect(error).to.be.instanceOf(LockDatabaseError);
    expect(error).to.have.property('code', 'ERR_DLOCK_DATABASE');
    expect(error.cause).to.equal(interrupted);
  });

  it('any other error is ERR_DLOCK_DATABASE', () => {
    const lost = Object.assign(new Error('Connection lost'), { code: 'PROTOCOL_CONNECTION_LOST' });
    expect(failure(getLockErrorOutcome(lost, true))).to.be.instanceOf(LockDatabaseError);
  });
});

describe("MySQL dialect: what GET_LOCK's value means", () => {
  it('1 is acquired and 0 is not, as number or bigint, cancelled or not', () => {
    for (const cancelled of [false, true]) {
      expect(getLockValueOutcome(1, cancelled, 'k').kind).to.equal('acquired');
      expect(getLockValueOutcome(1n, cancelled, 'k').kind).to.equal('acquired');
      expect(getLockValueOutcome(0, cancelled, 'k').kind).to.equal('not-acquired');
      expect(getLockValueOutcome(0n, cancelled, 'k').kind).to.equal('not-acquired');
    }
  });

  it("NULL after a cancel this attempt asked for (MariaDB's answer to KILL QUERY) is not acquired", () => {
    expect(getLockValueOutcome(null, true, 'k')).to.deep.equal({ kind: 'not-acquired' });
  });

  it('NULL otherwise is ERR_DLOCK_DATABASE naming the lock', () => {
    const error = failure(getLockValueOutcome(null, false, 'nightly'));
    expect(error).to.be.instanceOf(LockDatabaseError);
    expect(error.message).to.contain('"nightly"');
  });
});

describe('MySQL dialect: the case of lock names', () => {
  it('names keep their case (as sqlalchemy-dlock sends them); MySQL, not the library, folds it', () => {
    expect(mysqlName('Nightly-Report')).to.equal('Nightly-Report');
    expect(mysqlName('nightly-report')).to.equal('nightly-report');
  });
});
