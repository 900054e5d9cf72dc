import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { killStarted, nodeCommand, type Started } from '../support/processes.js';
import { holdLock, urlFor } from '../support/sessions.js';
import { uniqueKey, type DialectName } from '../support/targets.js';
import { startCliWith } from './cli-env.js';

/** The driver settings object a knexfile would hold for the test server of `dialect`. */
async function connectionObject(dialect: DialectName): Promise<Record<string, unknown>> {
  const url = new URL(await urlFor(dialect));
  return {
    host: url.hostname,
    port: Number(url.port || (dialect === 'postgres' ? 5432 : 3306)),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.slice(1)),
  };
}

/** A URL to a port nobody listens on: a knexfile environment that must not be chosen. */
const UNREACHABLE = 'postgres://postgres@127.0.0.1:1/unreachable';

describe('knex-dlock --knexfile', function () {
  let dir: string;
  let pg: string;
  let mysql: string;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'knex-dlock-knexfile-'));
    pg = JSON.stringify(await connectionObject('postgres'));
    mysql = JSON.stringify(await connectionObject('mysql'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    killStarted();
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  /** Writes `content` to `name` in the temporary directory and returns its path. */
  function write(name: string, content: string): string {
    const file = join(dir, name);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, content);
    return file;
  }

  /**
   * Holds a lock on `dialect`, runs `knex-dlock status --json` with `args` and `env`, and
   * checks that the CLI saw that very holder: it reached the same server, as that dialect.
   */
  async function expectStatusSeesHolder(
    dialect: DialectName,
    args: readonly string[],
    env: Record<string, string> = {},
  ): Promise<Started> {
    const key = uniqueKey('knexfile');
    const holder = await holdLock(dialect, key);
    cleanups.push(holder.close);
    const cli = startCliWith(['status', '--key', key, '--json', ...args], env);
    expect((await cli.exited).code, cli.stderr()).to.equal(0);
    const report = JSON.parse(cli.stdout()) as {
      dialect: string;
      holders: { sessionId: number }[];
    };
    expect(report.dialect).to.equal(dialect);
    expect(report.holders.map((h) => h.sessionId)).to.deep.equal([holder.session.id]);
    return cli;
  }

  describe('file kinds', function () {
    it('reads an ES module (.mjs) whose default export is keyed by environment', async () => {
      const file = write(
        'esm/knexfile.mjs',
        `export default { development: { client: 'pg', connection: ${pg} } };`,
      );
      await expectStatusSeesHolder('postgres', ['--knexfile', file]);
    });

    it('reads a .js ES module of a "type": "module" package, one named export per environment', async () => {
      write('esm-package/package.json', '{ "type": "module" }');
      const file = write(
        'esm-package/knexfile.js',
        `export const development = { client: 'postgresql', connection: ${pg} };`,
      );
      await expectStatusSeesHolder('postgres', ['--knexfile', file]);
    });

    it('reads a CommonJS file (.cjs) that exports one configuration', async () => {
      const file = write(
        'cjs/knexfile.cjs',
        `module.exports = { client: 'mysql2', connection: ${mysql} };`,
      );
      await expectStatusSeesHolder('mysql', ['--knexfile', file]);
    });

    it('reads a CommonJS .js file that exports an async function', async () => {
      const file = write(
        'cjs-function/knexfile.js',
        `module.exports = async () => ({ development: { client: 'mysql', connection: ${mysql} } });`,
      );
      await expectStatusSeesHolder('mysql', ['--knexfile', file]);
    });

    it('reads a JSON knexfile with a connection URL', async () => {
      const file = write(
        'json/knexfile.json',
        JSON.stringify({
          development: { client: 'postgres', connection: await urlFor('postgres') },
        }),
      );
      await expectStatusSeesHolder('postgres', ['--knexfile', file]);
    });

    it('reads a TypeScript knexfile with a typed default export', async () => {
      const file = write(
        'ts/knexfile.ts',
        `import type { Knex } from 'knex';\n` +
          `const config: { [env: string]: Knex.Config } = {\n` +
          `  development: { client: 'pg', connection: ${pg} as Knex.PgConnectionConfig },\n` +
          `};\n` +
          `export default config;\n`,
      );
      await expectStatusSeesHolder('postgres', ['--knexfile', file]);
    });

    it('reads a TypeScript knexfile in the shape `knex init -x ts` writes (module.exports)', async () => {
      const file = write(
        'ts-cjs/knexfile.ts',
        `import type { Knex } from 'knex';\n` +
          `const config: { [key: string]: Knex.Config } = {\n` +
          `  development: { client: 'mysql2', connection: ${mysql} },\n` +
          `};\n` +
          `module.exports = config;\n`,
      );
      await expectStatusSeesHolder('mysql', ['--knexfile', file]);
    });
  });

  describe('connection', function () {
    it('calls a connection function and keeps its expirationChecker from the driver', async () => {
      const file = write(
        'connection-function/knexfile.cjs',
        `module.exports = { client: 'mysql2', connection: async () => ` +
          `({ ...${mysql}, expirationChecker: () => false }) };`,
      );
      const cli = await expectStatusSeesHolder('mysql', ['--knexfile', file]);
      // mysql2 warns on stderr about every option it does not know.
      expect(cli.stderr()).to.equal('');
    });

    it("loads the knexfile from its own directory, as knex's CLI does", async () => {
      write('relative/settings.json', pg);
      const file = write(
        'relative/knexfile.cjs',
        `const { readFileSync } = require('node:fs');\n` +
          `module.exports = { client: 'pg', connection: JSON.parse(readFileSync('./settings.json', 'utf8')) };`,
      );
      await expectStatusSeesHolder('postgres', ['--knexfile', file]);
    });

    it('run takes the lock through the knexfile and passes the exit code on', async () => {
      const file = write(
        'run/knexfile.cjs',
        `module.exports = { client: 'mysql2', connection: ${mysql} };`,
      );
      const cli = startCliWith([
        'run',
        '--knexfile',
        file,
        '--key',
        uniqueKey('knexfile'),
        '--',
        ...nodeCommand('process.exit(3)'),
      ]);
      expect((await cli.exited).code, cli.stderr()).to.equal(3);
    });

    it("the knexfile's client chooses the dialect: --shared with mysql2 exits 64", async () => {
      const file = write(
        'shared/knexfile.cjs',
        `module.exports = { client: 'mysql2', connection: ${mysql} };`,
      );
      const cli = startCliWith(['run', '--knexfile', file, '--key', 'k', '--shared', '--', 'true']);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stderr()).to.contain('--shared needs a database with shared locks');
    });
  });

  describe('environments', function () {
    let file: string;
    before(async () => {
      file = write(
        'environments/knexfile.cjs',
        `module.exports = {\n` +
          `  development: { client: 'pg', connection: '${UNREACHABLE}' },\n` +
          `  staging: { client: 'mysql2', connection: ${mysql} },\n` +
          `};`,
      );
    });

    it('--env picks the environment', async () => {
      await expectStatusSeesHolder('mysql', ['--knexfile', file, '--env', 'staging']);
    });

    it('NODE_ENV picks it without --env', async () => {
      await expectStatusSeesHolder('mysql', ['--knexfile', file], { NODE_ENV: 'staging' });
    });

    it('--env wins over NODE_ENV', async () => {
      await expectStatusSeesHolder('mysql', ['--knexfile', file, '--env', 'staging'], {
        NODE_ENV: 'development',
      });
    });

    it('"development" is the default without --env and NODE_ENV', async () => {
      const cli = startCliWith(['status', '--key', 'k', '--knexfile', file]);
      expect((await cli.exited).code).to.equal(69);
      expect(cli.stderr()).to.contain('127.0.0.1:1/unreachable');
    });

    it('exits 64 for an environment the knexfile lacks, and names the ones it has', async () => {
      const cli = startCliWith(['status', '--key', 'k', '--knexfile', file, '--env', 'prod']);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stderr())
        .to.contain('no environment "prod"')
        .and.contain('"development", "staging"')
        .and.contain('--env');
    });
  });

  describe('errors', function () {
    it('exits 64 for a knexfile that does not exist', async () => {
      const cli = startCliWith(['status', '--key', 'k', '--knexfile', join(dir, 'missing.js')]);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stderr()).to.contain('missing.js does not exist').and.contain('--knexfile');
    });

    it('exits 64 for a client knex-dlock cannot lock through, naming the ones it can', async () => {
      const file = write(
        'sqlite/knexfile.json',
        JSON.stringify({ client: 'sqlite3', connection: { filename: './dev.sqlite3' } }),
      );
      const cli = startCliWith(['status', '--key', 'k', '--knexfile', file]);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stderr()).to.contain('"sqlite3"').and.contain('pg').and.contain('mysql2');
    });

    it('exits 64 for a knexfile that throws, with its message', async () => {
      const file = write('throws/knexfile.cjs', `throw new Error('DB_PASSWORD is not set');`);
      const cli = startCliWith(['status', '--key', 'k', '--knexfile', file]);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stderr()).to.contain('Reading the knexfile').and.contain('DB_PASSWORD is not set');
    });

    it('exits 64 for an environment without a client', async () => {
      const file = write(
        'no-client/knexfile.json',
        JSON.stringify({ development: { connection: UNREACHABLE } }),
      );
      const cli = startCliWith(['status', '--key', 'k', '--knexfile', file]);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stderr()).to.contain('has no client');
    });
  });
});
