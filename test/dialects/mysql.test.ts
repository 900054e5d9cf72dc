import { expect } from 'chai';
import { timeoutSeconds } from '../../src/dialects/mysql/dialect.js';

describe('MySQL dialect: GET_LOCK timeouts', () => {
  it('a try is 0 s on every server', () => {
    for (const flavor of ['mysql', 'mariadb', undefined] as const) {
      expect(timeoutSeconds({ kind: 'try' }, flavor)).to.equal(0);
    }
  });

  it('wait-forever is 4294967295 s, which MariaDB accepts (it refuses negatives)', () => {
    expect(timeoutSeconds({ kind: 'forever' }, 'mariadb')).to.equal(4294967295);
    expect(timeoutSeconds({ kind: 'forever' }, 'mysql')).to.equal(4294967295);
  });

  it('MariaDB gets milliseconds as fractional seconds, rounded up to the millisecond', () => {
    expect(timeoutSeconds({ kind: 'timed', ms: 300 }, 'mariadb')).to.equal(0.3);
    expect(timeoutSeconds({ kind: 'timed', ms: 1.2 }, 'mariadb')).to.equal(0.002);
  });

  it('MySQL, which reads whole seconds, gets the timeout rounded up to the second', () => {
    expect(timeoutSeconds({ kind: 'timed', ms: 300 }, 'mysql')).to.equal(1);
    expect(timeoutSeconds({ kind: 'timed', ms: 1000 }, 'mysql')).to.equal(1);
    expect(timeoutSeconds({ kind: 'timed', ms: 1001 }, 'mysql')).to.equal(2);
  });
});
