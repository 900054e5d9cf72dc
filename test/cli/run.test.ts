import { expect } from 'chai';
import { inspectLock } from '../../src/index.js';
import { sleep } from '../support/expect.js';
import { actualKeyOf } from '../support/lock-connections.js';
import { isAlive, killStarted, nodeCommand, startCli, type Started } from '../support/processes.js';
import {
  holdLock,
  openSession,
  terminateSession,
  urlFor,
  type Session,
} from '../support/sessions.js';
import { watchLockWaits, type LockWaitWatcher } from '../support/server-state.js';
import { uniqueKey, type DialectName } from '../support/targets.js';

/** A command that prints "ready", then exits when a line arrives on stdin. */
const WAIT_FOR_STDIN = nodeCommand(
  "console.log('ready'); process.stdin.once('data', () => process.exit(5));",
);

/** Prints "ready <pid>", reports SIGTERM and SIGINT on stdout and exits 42 on either. */
const TRAP_SIGNALS = nodeCommand(
  "for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => { console.log('got ' + s); process.exit(42); });" +
    "console.log('ready ' + process.pid); setInterval(() => {}, 1000);",
);

/** Prints "ready <pid>" and ignores SIGTERM. */
const IGNORE_SIGTERM = nodeCommand(
  "process.on('SIGTERM', () => console.log('ignoring SIGTERM'));" +
    "console.log('ready ' + process.pid); setInterval(() => {}, 1000);",
);

for (const dialect of ['postgres', 'mysql'] as const satisfies readonly DialectName[]) {
  describe(`knex-dlock run on ${dialect}`, function () {
    let url: string;
    let observer: Session;
    let waits: LockWaitWatcher;
    const cleanups: (() => Promise<void>)[] = [];

    const run = (key: string, options: string[], command: string[]): Started =>
      startCli(['run', '--url', url, '--key', key, ...options, '--', ...command]);

    const holderIds = async (key: string) =>
      (await inspectLock(observer.target, key)).holders.map((h) => h.sessionId);

    before(async () => {
      url = await urlFor(dialect);
      observer = await openSession(dialect);
      waits = await watchLockWaits(dialect);
    });
    after(async () => {
      await observer.close();
      await waits.close();
    });
    afterEach(async () => {
      killStarted();
      await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
    });

    it("passes the command's stdout, stderr and exit code through", async () => {
      const cli = run(
        uniqueKey('cli'),
        [],
        nodeCommand(
          "process.stdout.write('to stdout'); process.stderr.write('to stderr'); process.exit(3);",
        ),
      );
      expect(await cli.exited).to.deep.equal({ code: 3, signal: null });
      expect(cli.stdout()).to.equal('to stdout');
      expect(cli.stderr()).to.equal('to stderr');
    });

    it('accepts --keepalive and runs the command under the lock as usual', async () => {
      const key = uniqueKey('cli');
      const cli = run(key, ['--keepalive', '100ms'], WAIT_FOR_STDIN);
      await cli.waitForStdout(/ready/);
      // Time for several keepalive checks (one per 100 ms): the lock must outlive them.
      await sleep(350);
      expect(await holderIds(key)).to.have.length(1);
      cli.child.stdin?.write('go\n');
      expect((await cli.exited).code).to.equal(5);
      expect(await holderIds(key)).to.deep.equal([]);
    });

    it('holds the lock while the command runs and frees it when the command exits', async () => {
      const key = uniqueKey('cli');
      const cli = run(key, [], WAIT_FOR_STDIN);
      await cli.waitForStdout(/ready/);
      const { held, holders } = await inspectLock(observer.target, key);
      expect(held).to.equal(true);
      if (dialect === 'postgres')
        expect(holders[0]?.applicationName).to.equal(`knex-dlock run ${key}`);
      cli.child.stdin?.write('done\n');
      expect((await cli.exited).code).to.equal(5);
      expect(await holderIds(key)).to.deep.equal([]);
    });

    it('exits 75 without running the command when another session holds the lock (--no-wait)', async () => {
      const key = uniqueKey('cli');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const cli = run(key, ['--no-wait'], nodeCommand("console.log('ran')"));
      expect((await cli.exited).code).to.equal(75);
      expect(cli.stdout()).to.equal('');
      expect(cli.stderr()).to.contain('held elsewhere').and.contain(`session ${holder.session.id}`);
    });

    it('gives up after --timeout and exits with --conflict-exit-code', async () => {
      const key = uniqueKey('cli');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const cli = run(
        key,
        ['--timeout', '300ms', '--conflict-exit-code', '9'],
        nodeCommand("console.log('ran')"),
      );
      expect((await cli.exited).code).to.equal(9);
      expect(cli.stdout()).to.equal('');
      const waited = Number(/timed out after (\d+) ms/.exec(cli.stderr())?.[1]);
      expect(waited).to.be.within(290, 1_000);
    });

    it('waits for the lock and runs the command once the holder releases it', async () => {
      const key = uniqueKey('cli');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const cli = run(key, ['--timeout', '8s'], nodeCommand("console.log('ran')"));
      await waits.waitFor(actualKeyOf(dialect, key), { timeoutMs: 8_000 });
      expect(cli.stdout()).to.equal('');
      await holder.lock.release();
      expect((await cli.exited).code).to.equal(0);
      expect(cli.stdout()).to.equal('ran\n');
    });

    it('a SIGTERM while waiting for the lock exits 143 and never runs the command', async () => {
      const key = uniqueKey('cli');
      const holder = await holdLock(dialect, key);
      cleanups.push(holder.close);
      const cli = run(key, ['--verbose'], nodeCommand("console.log('ran')"));
      await cli.waitForStderr(/waiting for the lock/);
      cli.child.kill('SIGTERM');
      expect(await cli.exited).to.deep.equal({ code: 143, signal: null });
      expect(cli.stdout()).to.equal('');
      expect(await holderIds(key)).to.deep.equal([holder.session.id]);
    });

    // Signal handling and SIGKILL escalation do not depend on the database: one of each suffices.
    const signals =
      dialect === 'postgres' ? (['SIGTERM', 'SIGINT'] as const) : (['SIGTERM'] as const);
    for (const signal of signals) {
      it(`passes ${signal} on to the command, exits with its code, then frees the lock`, async () => {
        const key = uniqueKey('cli');
        const cli = run(key, [], TRAP_SIGNALS);
        await cli.waitForStdout(/ready/);
        cli.child.kill(signal);
        expect((await cli.exited).code).to.equal(42);
        expect(cli.stdout()).to.contain(`got ${signal}`);
        expect(await holderIds(key)).to.deep.equal([]);
      });
    }

    it("stops the command with SIGTERM and exits 76 when the lock's connection is killed", async () => {
      const key = uniqueKey('cli');
      const cli = run(key, [], TRAP_SIGNALS);
      await cli.waitForStdout(/ready/);
      const [sessionId] = await holderIds(key);
      await terminateSession(dialect, sessionId ?? -1);
      expect((await cli.exited).code).to.equal(76);
      expect(cli.stdout()).to.contain('got SIGTERM');
      expect(cli.stderr()).to.contain('was lost');
    });

    if (dialect === 'mysql') {
      it('sends SIGKILL after --kill-after when the command ignores SIGTERM', async () => {
        const key = uniqueKey('cli');
        const cli = run(key, ['--kill-after', '300ms'], IGNORE_SIGTERM);
        const [, pid] = (await cli.waitForStdout(/ready (\d+)/)) as string[];
        const [sessionId] = await holderIds(key);
        await terminateSession(dialect, sessionId ?? -1);
        expect((await cli.exited).code).to.equal(76);
        expect(cli.stdout()).to.contain('ignoring SIGTERM');
        expect(cli.stderr()).to.contain('sending SIGKILL');
        expect(isAlive(Number(pid))).to.equal(false);
      });
    }

    if (dialect === 'postgres') {
      it('with --on-lost=ignore lets the command finish and keeps its exit code', async () => {
        const key = uniqueKey('cli');
        const cli = run(key, ['--on-lost', 'ignore'], WAIT_FOR_STDIN);
        await cli.waitForStdout(/ready/);
        const [sessionId] = await holderIds(key);
        await terminateSession(dialect, sessionId ?? -1);
        await cli.waitForStderr(/keeps running/);
        cli.child.stdin?.write('done\n');
        expect((await cli.exited).code).to.equal(5);
      });
    }
  });
}

describe('knex-dlock run, whatever the database', function () {
  afterEach(killStarted);

  it('exits 127 when the command does not exist, and frees the lock', async () => {
    const url = await urlFor('postgres');
    const key = uniqueKey('cli');
    const cli = startCli(['run', '--url', url, '--key', key, '--', 'knex-dlock-no-such-command']);
    expect((await cli.exited).code).to.equal(127);
    expect(cli.stderr()).to.contain('command not found');
    const observer = await openSession('postgres');
    try {
      expect((await inspectLock(observer.target, key)).held).to.equal(false);
    } finally {
      await observer.close();
    }
  });

  it('takes the URL from DATABASE_URL and runs a command given without --', async () => {
    const cli = startCli(
      ['run', '--key', uniqueKey('cli'), process.execPath, '-e', 'process.exit(4)'],
      {
        DATABASE_URL: await urlFor('mysql'),
      },
    );
    expect((await cli.exited).code).to.equal(4);
  });

  it('lets two --shared runs hold a PostgreSQL lock together', async () => {
    const url = await urlFor('postgres');
    const key = uniqueKey('cli');
    const args = ['run', '--url', url, '--key', key, '--shared', '--no-wait', '--'];
    const first = startCli([...args, ...WAIT_FOR_STDIN]);
    await first.waitForStdout(/ready/);
    const second = startCli([...args, ...nodeCommand('process.exit(0)')]);
    expect((await second.exited).code).to.equal(0);
    first.child.stdin?.write('done\n');
    expect((await first.exited).code).to.equal(5);
  });

  it('refuses --shared on MySQL with exit code 64', async () => {
    const cli = startCli([
      'run',
      '--url',
      await urlFor('mysql'),
      '--key',
      'k',
      '--shared',
      '--',
      'true',
    ]);
    expect((await cli.exited).code).to.equal(64);
    expect(cli.stderr()).to.contain('--shared needs a database with shared locks');
  });

  it('exits 75 without a lock held by a second run started with --no-wait', async () => {
    const url = await urlFor('postgres');
    const key = uniqueKey('cli');
    const first = startCli(['run', '--url', url, '--key', key, '--', ...WAIT_FOR_STDIN]);
    await first.waitForStdout(/ready/);
    const second = startCli(['run', '--url', url, '--key', key, '--no-wait', '--', 'true']);
    expect((await second.exited).code).to.equal(75);
    expect(second.stderr()).to.contain(`knex-dlock run ${key}`);
    first.child.stdin?.write('done\n');
    expect((await first.exited).code).to.equal(5);
  });
});

for (const dialect of ['postgres', 'mysql'] as const satisfies readonly DialectName[]) {
  describe(`knex-dlock run --max on ${dialect}`, function () {
    this.timeout(60_000);
    afterEach(() => killStarted());

    it('--max 2 runs two commands at once, refuses a third (--no-wait, exit 75), then lets it in', async () => {
      const url = await urlFor(dialect);
      const key = uniqueKey('cli-semaphore');
      const run = (options: string[], command: string[]) =>
        startCli(['run', '--url', url, '--key', key, '--max', '2', ...options, '--', ...command]);
      const first = run([], WAIT_FOR_STDIN);
      const second = run([], WAIT_FOR_STDIN);
      await Promise.all([first.waitForStdout(/ready/), second.waitForStdout(/ready/)]);
      const third = run(['--no-wait'], ['echo', 'ran']);
      expect((await third.exited).code, third.stderr()).to.equal(75);
      expect(third.stdout()).to.equal('');
      expect(third.stderr()).to.match(/all 2 slots/);
      first.child.stdin.write('done\n');
      expect((await first.exited).code).to.equal(5);
      const fourth = run(['--no-wait'], ['echo', 'ran']);
      expect((await fourth.exited).code, fourth.stderr()).to.equal(0);
      expect(fourth.stdout().trim()).to.equal('ran');
      second.child.stdin.write('done\n');
      expect((await second.exited).code).to.equal(5);
    });

    it('--max with --shared is a usage error (exit 64)', async () => {
      const cli = startCli([
        'run',
        '--url',
        await urlFor(dialect),
        '--key',
        'k',
        '--max',
        '2',
        '--shared',
        '--',
        'echo',
        'ran',
      ]);
      expect((await cli.exited).code).to.equal(64);
      expect(cli.stdout()).to.equal('');
    });
  });
}
