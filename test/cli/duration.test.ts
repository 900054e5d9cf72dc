import { expect } from 'chai';
import { parseDuration } from '../../src/cli/duration.js';
import { expectThrowCode } from '../support/expect.js';

describe('CLI durations', function () {
  it('reads milliseconds, seconds, minutes and hours', () => {
    expect(parseDuration('500ms')).to.equal(500);
    expect(parseDuration('30s')).to.equal(30_000);
    expect(parseDuration('1.5s')).to.equal(1_500);
    expect(parseDuration('5m')).to.equal(300_000);
    expect(parseDuration('1h')).to.equal(3_600_000);
    expect(parseDuration('0')).to.equal(0);
  });

  it('refuses a bare number and an unknown unit with ERR_DLOCK_INVALID_OPTION', () => {
    for (const text of ['30', '5d', '-1s', 's', '']) {
      expectThrowCode(() => parseDuration(text), 'ERR_DLOCK_INVALID_OPTION');
    }
  });
});
