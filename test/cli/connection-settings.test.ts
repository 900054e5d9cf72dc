import { existsSync } from 'node:fs';
import { expect } from 'chai';
import { inspectLock, type LockHolder } from '../../src/index.js';
import { killStarted, nodeCommand } from '../support/processes.js';
import { openSession, urlFor, type Session } from '../support/sessions.js';
import { uniqueKey, type DialectName } from '../support/targets.js';
import { libpqVariables, startCliWith } from './cli-env.js';

/** A command that prints "ready", then exits 5 when a line arrives on stdin. */
const WAIT_FOR_STDIN = nodeCommand(
  "console.log('ready'); process.stdin.once('data', () => process.exit(5));",
);

/**
 * Starts `knex-dlock run` with `connection` (options) and `env`, waits until its command runs,
 * and returns who holds the lock then; the command is then let go, and must exit 5.
 */
async function holderWhileRunning(
  observer: Session,
  connection: readonly string[],
  env: Record<string, string | undefined> = {},
): Promise<LockHolder> {
  const key = uniqueKey('settings');
  const cli = startCliWith(['run', ...connection, '--key', key, '--', ...WAIT_FOR_STDIN], env);
  await cli.waitForStdout(/ready/).catch((err: Error) => {
    throw new Error(`${err.message}; stderr: ${cli.stderr()}`);
  });
  const { holders } = await inspectLock(observer.target, key);
  cli.child.stdin.write('go\n');
  expect((await cli.exited).code, cli.stderr()).to.equal(5);
  expect(holders).to.have.length(1);
  return holders[0]!;
}

describe('knex-dlock connection settings: the libpq environment variables', function () {
  let pgUrl: string;
  let observer: Session;
  before(async () => {
    pgUrl = await urlFor('postgres');
    observer = await openSession('postgres');
  });
  after(() => observer.close());
  afterEach(killStarted);

  it('PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE alone are enough (no URL)', async () => {
    const holder = await holderWhileRunning(observer, [], libpqVariables(pgUrl));
    expect(holder.sessionId).to.be.a('number');
  });

  it('PGAPPNAME names the connection instead of "knex-dlock run <key>"', async () => {
    const env = { ...libpqVariables(pgUrl), PGAPPNAME: 'nightly-report' };
    const holder = await holderWhileRunning(observer, [], env);
    expect(holder.applicationName).to.equal('nightly-report');
  });

  it('without PGAPPNAME the connection is named "knex-dlock run <key>"', async () => {
    const holder = await holderWhileRunning(observer, [], libpqVariables(pgUrl));
    expect(holder.applicationName).to.match(/^knex-dlock run dlock-test:settings:/);
  });

  it('PGPORT is read: a port nobody listens on exits 69 and names it', async () => {
    const env = { ...libpqVariables(pgUrl), PGHOST: '127.0.0.1', PGPORT: '1' };
    const cli = startCliWith(['status', '--key', 'k'], env);
    expect((await cli.exited).code).to.equal(69);
    expect(cli.stderr()).to.contain('Connecting to PostgreSQL at 127.0.0.1:1/');
  });

  it('a setting the URL leaves out comes from its PG* variable, as in libpq', async () => {
    const cli = startCliWith(['status', '--key', 'k', '--url', 'postgres://postgres@127.0.0.1/x'], {
      PGPORT: '1',
    });
    expect((await cli.exited).code).to.equal(69);
    expect(cli.stderr()).to.contain('Connecting to PostgreSQL at 127.0.0.1:1/x');
  });

  it('PGSSLMODE and PGAPPNAME alone do not choose PostgreSQL: exit 64 asks for settings', async () => {
    const cli = startCliWith(['status', '--key', 'k'], {
      PGSSLMODE: 'disable',
      PGAPPNAME: 'x',
    });
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('DATABASE_URL').and.contain('PGHOST');
  });
});

describe('knex-dlock connection settings: the order', function () {
  afterEach(killStarted);

  it('DATABASE_URL is used without --url, and wins over the PG* variables', async () => {
    const cli = startCliWith(['status', '--key', 'k', '--json'], {
      DATABASE_URL: await urlFor('mysql'),
      PGHOST: '127.0.0.1',
      PGPORT: '1',
    });
    expect((await cli.exited).code, cli.stderr()).to.equal(0);
    expect(JSON.parse(cli.stdout())).to.include({ dialect: 'mysql', held: false });
  });

  it('--url wins over DATABASE_URL', async () => {
    const cli = startCliWith(['status', '--key', 'k', '--json', '--url', await urlFor('mysql')], {
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test',
    });
    expect((await cli.exited).code, cli.stderr()).to.equal(0);
    expect(JSON.parse(cli.stdout())).to.include({ dialect: 'mysql' });
  });

  it('--verbose says where the settings came from', async () => {
    const cli = startCliWith(['status', '--key', 'k', '--verbose'], {
      DATABASE_URL: await urlFor('postgres'),
    });
    expect((await cli.exited).code, cli.stderr()).to.equal(0);
    expect(cli.stderr()).to.match(/connected to PostgreSQL at .* \(settings from DATABASE_URL\)/);
  });

  it('exits 64 when --url and --knexfile are both given', async () => {
    const cli = startCliWith(
      ['status', '--key', 'k', '--url', await urlFor('postgres'), '--knexfile', 'knexfile.js'],
      {},
    );
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('either --url or --knexfile');
  });

  it('exits 64 for --env without --knexfile', async () => {
    const cli = startCliWith(['status', '--key', 'k', '--env', 'production'], {
      DATABASE_URL: await urlFor('postgres'),
    });
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('--knexfile');
  });
});

/** The first Unix socket the test server listens on that this machine can reach, if any. */
async function localSocket(dialect: DialectName): Promise<string | undefined> {
  const session = await openSession(dialect);
  try {
    if (dialect === 'mysql') {
      const [row] = await session.query('SELECT @@socket AS socket');
      const socket = String(row?.socket ?? '');
      return socket && existsSync(socket) ? socket : undefined;
    }
    const [row] = await session.query(
      "SELECT current_setting('unix_socket_directories') AS dirs, current_setting('port') AS port",
    );
    const dirs = String(row?.dirs ?? '').split(',');
    return dirs
      .map((dir) => dir.trim())
      .find((dir) => dir && existsSync(`${dir}/.s.PGSQL.${String(row?.port)}`));
  } finally {
    await session.close();
  }
}

for (const dialect of ['postgres', 'mysql'] as const satisfies readonly DialectName[]) {
  describe(`knex-dlock connection settings: Unix socket URLs on ${dialect}`, function () {
    let socket: string | undefined;
    let url: URL;
    let observer: Session;
    before(async function () {
      socket = await localSocket(dialect);
      if (!socket) this.skip();
      url = new URL(await urlFor(dialect));
      observer = await openSession(dialect);
    });
    after(() => observer?.close());
    afterEach(killStarted);

    const userInfo = () => `${url.username}${url.password ? `:${url.password}` : ''}`;
    const database = () => url.pathname.slice(1);

    if (dialect === 'postgres') {
      it('postgresql://user@/db?host=/socket/dir connects through the socket', async () => {
        const socketUrl = `postgresql://${userInfo()}@/${database()}?host=${socket}`;
        const holder = await holderWhileRunning(observer, ['--url', socketUrl]);
        expect(holder.clientAddress).to.equal('local socket');
      });

      it('postgres://user@%2Fsocket%2Fdir/db (percent-encoded host) connects through the socket', async () => {
        const socketUrl = `postgres://${userInfo()}@${encodeURIComponent(socket!)}/${database()}`;
        const holder = await holderWhileRunning(observer, ['--url', socketUrl]);
        expect(holder.clientAddress).to.equal('local socket');
      });

      it('PGHOST=/socket/dir connects through the socket', async () => {
        const env = { ...libpqVariables(url.href), PGHOST: socket };
        const holder = await holderWhileRunning(observer, [], env);
        expect(holder.clientAddress).to.equal('local socket');
      });
    } else {
      it('mysql://user@localhost/db?socketPath=/socket connects through the socket', async () => {
        const socketUrl = `mysql://${userInfo()}@localhost/${database()}?socketPath=${socket}`;
        const holder = await holderWhileRunning(observer, ['--url', socketUrl]);
        // A socket client has no port: PROCESSLIST shows its host as just "localhost".
        expect(holder.clientAddress).to.equal('localhost');
      });
    }
  });
}
