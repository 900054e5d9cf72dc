/**
 * The published shape: both builds load through the package's `exports` map and agree. These
 * tests need the build (`npm run build`, which CI runs before the tests).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROBE = `const k = m.PostgresLock.convert('hello'); console.log(JSON.stringify({
  names: ['createLock', 'withLock', 'BaseLock', 'PostgresLock', 'MysqlLock', 'inspectLock',
    'migrateLatest', 'withMigrationLock', 'DlockError'].filter((n) => typeof m[n] !== 'function'),
  key: String(k), name: m.MysqlLock.convert(42) }));`;

function run(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' }).trim();
}

describe('package builds', function () {
  before(function () {
    if (!existsSync(`${ROOT}dist/esm/index.js`) || !existsSync(`${ROOT}dist/cjs/index.js`)) {
      this.skip();
    }
  });

  const expected = { names: [], key: '9022087748821825191', name: '42' };

  it('require("knex-dlock") loads the CommonJS build with every export', () => {
    expect(JSON.parse(run(['-e', `const m = require('knex-dlock'); ${PROBE}`]))).to.deep.equal(
      expected,
    );
  });

  it('import "knex-dlock" loads the ESM build with every export', () => {
    const script = `import * as m from 'knex-dlock'; ${PROBE}`;
    expect(JSON.parse(run(['--input-type=module', '-e', script]))).to.deep.equal(expected);
  });

  it('the bin entry runs and prints the package version', () => {
    const version = run(['-p', "require('./package.json').version"]);
    expect(run(['dist/esm/cli/main.js', '--version'])).to.equal(version);
  });
});
