import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import knexFactory from 'knex';
import { createLock, createSemaphore, MysqlLock, PostgresLock } from '../../src/index.js';
import { killStarted, startCli } from '../support/processes.js';
import { watchLockWaits } from '../support/server-state.js';
import { holdLock, openSession, urlFor } from '../support/sessions.js';
import { uniqueKey, type DialectName } from '../support/targets.js';
import { startCliWith } from './cli-env.js';

interface StatusJson {
  key: string;
  dialect: DialectName;
  actualKey: string;
  held: boolean;
  holders: {
    mode: string;
    sessionId: number;
    applicationName: string | null;
    stateSince: string;
  }[];
  waiters: { mode: string; sessionId: number }[];
}

async function statusJson(dialect: DialectName, key: string): Promise<StatusJson> {
  const cli = startCli(['status', '--url', await urlFor(dialect), '--key', key, '--json']);
  const { code } = await cli.exited;
  expect(code, cli.stderr()).to.equal(0);
  return JSON.parse(cli.stdout()) as StatusJson;
}

for (const dialect of ['postgres', 'mysql'] as const satisfies readonly DialectName[]) {
  describe(`knex-dlock status on ${dialect}`, function () {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      killStarted();
      await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
    });

    it('prints "free" and exits 0 for a lock nobody holds', async () => {
      const key = uniqueKey('status');
      const cli = startCli(['status', '--url', await urlFor(dialect), '--key', key]);
      expect((await cli.exited).code).to.equal(0);
      expect(cli.stdout()).to.match(/: free\n$/);
    });

    it("--json names the holder's session and the database key", async () => {
      const key = uniqueKey('status');
      const holder = await holdLock(dialect, key, { applicationName: 'status-test' });
      cleanups.push(holder.close);
      const report = await statusJson(dialect, key);
      const actualKey =
        dialect === 'postgres' ? PostgresLock.convert(key).toString() : MysqlLock.convert(key);
      expect(report).to.include({ key, dialect, actualKey, held: true });
      expect(report.holders).to.have.length(1);
      expect(report.holders[0]).to.include({ mode: 'exclusive', sessionId: holder.session.id });
      expect(Date.parse(report.holders[0]?.stateSince ?? '')).to.be.closeTo(Date.now(), 10_000);
      if (dialect === 'postgres')
        expect(report.holders[0]?.applicationName).to.equal('status-test');
    });

    it('--json lists a session that waits for the lock with its session id', async () => {
      const key = uniqueKey('status');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const waiting = await openSession(dialect);
      cleanups.push(() => waiting.close());
      const waiter = createLock(waiting.target, key);
      const controller = new AbortController();
      const acquiring = waiter.acquire({ signal: controller.signal }).catch(() => undefined);
      cleanups.push(async () => {
        controller.abort();
        await acquiring;
      });
      const watcher = await watchLockWaits(dialect);
      cleanups.push(() => watcher.close());
      await watcher.waitFor(waiter.actualKey);
      const report = await statusJson(dialect, key);
      expect(report.holders.map((h) => h.sessionId)).to.deep.equal([holder.session.id]);
      expect(report.waiters.map((w) => w.sessionId)).to.deep.equal([waiting.id]);
    });

    it('--max lists the slots of a semaphore and how many are in use', async () => {
      const key = uniqueKey('status-sem');
      const knex = knexFactory({
        client: dialect === 'postgres' ? 'pg' : 'mysql2',
        connection: await urlFor(dialect),
      });
      cleanups.push(() => knex.destroy());
      const holders = [
        createSemaphore(knex, key, { max: 3 }),
        createSemaphore(knex, key, { max: 3 }),
      ];
      cleanups.push(async () => void (await Promise.all(holders.map((h) => h.close()))));
      for (const holder of holders) expect(await holder.acquire({ block: false })).to.equal(true);
      const cli = startCli([
        'status',
        '--url',
        await urlFor(dialect),
        '--key',
        key,
        '--max',
        '3',
        '--json',
      ]);
      expect((await cli.exited).code, cli.stderr()).to.equal(0);
      const report = JSON.parse(cli.stdout()) as {
        max: number;
        inUse: number;
        slots: { held: boolean }[];
      };
      expect(report).to.include({ max: 3, inUse: 2 });
      const held = report.slots.map((slot) => slot.held);
      expect(held.filter(Boolean)).to.have.length(2);
      expect(held.map((h, i) => (h ? i : -1)).filter((i) => i >= 0)).to.have.members(
        holders.map((h) => h.slot!),
      );
      const text = startCli(['status', '--url', await urlFor(dialect), '--key', key, '--max', '3']);
      expect((await text.exited).code).to.equal(0);
      expect(text.stdout()).to.match(/2 of 3 slots in use/);
    });

    it('prints the holder on one line without --json', async () => {
      const key = uniqueKey('status');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const cli = startCli(['status', '--url', await urlFor(dialect), '--key', key]);
      expect((await cli.exited).code).to.equal(0);
      expect(cli.stdout())
        .to.contain('held by 1 session')
        .and.contain(`session ${holder.session.id}`);
    });
  });
}

describe('knex-dlock status on postgres: shared holders', function () {
  it('--json lists every shared holder', async () => {
    const key = uniqueKey('status');
    const first = await holdLock('postgres', key, { shared: true });
    const second = await holdLock('postgres', key, { shared: true });
    try {
      const report = await statusJson('postgres', key);
      expect(report.holders.map((h) => h.mode)).to.deep.equal(['shared', 'shared']);
      expect(report.holders.map((h) => h.sessionId)).to.have.members([
        first.session.id,
        second.session.id,
      ]);
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('knex-dlock options and usage errors', function () {
  afterEach(killStarted);

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as {
      version: string;
    };
    const cli = startCli(['--version']);
    expect((await cli.exited).code).to.equal(0);
    expect(cli.stdout().trim()).to.equal(pkg.version);
  });

  it('run --help lists the options and the exit codes', async () => {
    const cli = startCli(['run', '--help']);
    expect((await cli.exited).code).to.equal(0);
    for (const text of [
      '--timeout',
      '--no-wait',
      '--conflict-exit-code',
      '--on-lost',
      'Exit codes',
      '75',
      '76',
    ]) {
      expect(cli.stdout()).to.contain(text);
    }
  });

  it('status --help describes --json', async () => {
    const cli = startCli(['status', '--help']);
    expect((await cli.exited).code).to.equal(0);
    expect(cli.stdout()).to.contain('--json');
  });

  it('--help says where connection settings come from, and shows socket URLs', async () => {
    const cli = startCli(['status', '--help']);
    expect((await cli.exited).code).to.equal(0);
    for (const text of ['--knexfile', '--env', 'DATABASE_URL', 'PGHOST', '?host=', 'socketPath=']) {
      expect(cli.stdout()).to.contain(text);
    }
  });

  it('exits 64 when --key is missing', async () => {
    const cli = startCli(['status', '--url', await urlFor('postgres')]);
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('--key');
  });

  it('exits 64 when no --url, --knexfile, DATABASE_URL or PG* variable is given', async () => {
    const cli = startCliWith(['status', '--key', 'k']);
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('DATABASE_URL').and.contain('--knexfile').and.contain('PGHOST');
  });

  it('exits 64 for a URL scheme it does not support', async () => {
    const cli = startCli(['status', '--key', 'k', '--url', 'sqlite:///tmp/x.db']);
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('postgres://');
  });

  it('exits 64 for a duration without a unit', async () => {
    const cli = startCli([
      'run',
      '--key',
      'k',
      '--url',
      'postgres://x',
      '--timeout',
      '30',
      '--',
      'true',
    ]);
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('500ms, 30s, 5m');
  });

  it('exits 69 when the database cannot be reached', async () => {
    const cli = startCli([
      'run',
      '--key',
      'k',
      '--url',
      'postgres://postgres@127.0.0.1:1/test',
      '--',
      'true',
    ]);
    expect((await cli.exited).code).to.equal(69);
    expect(cli.stderr()).to.contain('Connecting to PostgreSQL at 127.0.0.1:1/test');
  });
});
