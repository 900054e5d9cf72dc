/** runAsLeader: one leader at a time across processes, replaced when it dies or steps down. */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';
import { runAsLeader } from '../../src/index.js';
import { crossProcessScope, workerEnv } from '../support/process-scope.js';
import { startNodeScript, type Started } from '../support/processes.js';
import { openInspector, uniqueKey, type DialectName } from '../support/targets.js';
import { expectThrowCode } from '../support/expect.js';

const WORKER = fileURLToPath(new URL('../fixtures/lock-worker.ts', import.meta.url));

interface Term {
  pid: number;
  started: number;
  ended: number | null;
}

async function terms(knex: Knex, table: string): Promise<Term[]> {
  const rows = (await knex(table).select('pid', 'started', 'ended').orderBy('started')) as {
    pid: number;
    started: unknown;
    ended: unknown;
  }[];
  return rows.map((row) => ({
    pid: Number(row.pid),
    started: Number(row.started),
    ended: row.ended === null ? null : Number(row.ended),
  }));
}

/** Resolves with the worker that prints "leading" next (its `n`-th such line). */
function nextLeader(workers: readonly Started[], seen: Map<Started, number>): Promise<Started> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 30_000;
    const poll = () => {
      for (const worker of workers) {
        const count = worker.stdout().split('leading\n').length - 1;
        if (count > (seen.get(worker) ?? 0)) {
          seen.set(worker, count);
          resolve(worker);
          return;
        }
      }
      if (Date.now() > deadline) reject(new Error('no worker took the lead'));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

for (const [dialect, client] of [
  ['postgres', 'pg'],
  ['mysql', 'mysql2'],
] as const satisfies readonly (readonly [DialectName, string])[]) {
  describe(`runAsLeader across processes on ${dialect}`, function () {
    this.timeout(120_000);
    const scope = crossProcessScope(dialect, client, 'dlock_leader');

    it('3 processes: one leads at a time; SIGKILL or stop() of the leader hands over at once', async () => {
      await scope.knex.schema.createTable(scope.table, (t) => {
        t.integer('pid').notNullable();
        t.double('started').notNullable();
        t.double('ended');
      });
      const key = uniqueKey('leader');
      const env = await workerEnv();
      const workers = Array.from({ length: 3 }, () =>
        startNodeScript(WORKER, ['leader', dialect, 'knex', key, scope.table], env),
      );
      const seen = new Map<Started, number>();
      const inspector = await openInspector(dialect);
      try {
        const first = await nextLeader(workers, seen);
        expect(await inspector.holders(await actualKeyOf(key, dialect))).to.equal(1);

        // The leader dies without a word: another takes over.
        const killedAt = Date.now();
        first.child.kill('SIGKILL');
        const second = await nextLeader(workers, seen);
        const afterKill = Date.now() - killedAt;
        expect(second).to.not.equal(first);
        expect(afterKill, 'ms from SIGKILL to the next leader').to.be.below(2_000);

        // The leader steps down: stop() hands over.
        const stoppedAt = Date.now();
        second.child.kill('SIGTERM');
        const third = await nextLeader(workers, seen);
        const afterStop = Date.now() - stoppedAt;
        expect(third).to.not.equal(first).and.to.not.equal(second);
        expect(afterStop, 'ms from stop() to the next leader').to.be.below(1_000);
        expect((await second.exited).code, second.stderr()).to.equal(0);
        console.log(`      handover: ${afterKill} ms after SIGKILL, ${afterStop} ms after stop()`);

        third.child.kill('SIGTERM');
        expect((await third.exited).code, third.stderr()).to.equal(0);
        const all = await terms(scope.knex, scope.table);
        expect(all.map((term) => term.pid)).to.deep.equal([first.pid, second.pid, third.pid]);
        // Terms never overlap: each starts after the one before ended (the killed one's end is
        // unknown; the next starts after the kill, by the server's clock).
        expect(all[1]!.ended).to.not.equal(null);
        expect(all[2]!.started).to.be.at.least(all[1]!.ended!);
        expect(all[2]!.ended).to.not.equal(null);
      } finally {
        await inspector.close();
      }
    });
  });
}

async function actualKeyOf(key: string, dialect: DialectName): Promise<bigint | string> {
  const { PostgresLock, MysqlLock } = await import('../../src/index.js');
  return dialect === 'postgres' ? PostgresLock.convert(key) : MysqlLock.convert(key);
}

describe('runAsLeader in one process (postgres)', function () {
  this.timeout(30_000);
  let knex: Knex;
  before(async () => {
    const { default: knexFactory } = await import('knex');
    const { databaseUrls } = await import('../support/databases.js');
    knex = knexFactory({ client: 'pg', connection: (await databaseUrls()).pg });
  });
  after(() => knex.destroy());

  it("aborts the term's signal when the lock is lost, then leads again; stop() ends it", async () => {
    const key = uniqueKey('leader');
    const signals: AbortSignal[] = [];
    let wake: (() => void) | undefined;
    const leadership = runAsLeader(
      knex,
      key,
      (signal) => {
        signals.push(signal);
        wake?.();
        return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      },
      { retryDelay: 10 },
    );
    const termStarted = (count: number) =>
      new Promise<void>((resolve) => {
        const check = () => (signals.length >= count ? resolve() : (wake = check));
        check();
      });
    await termStarted(1);
    expect(leadership.isLeader).to.equal(true);
    const inspector = await openInspector('postgres');
    try {
      const { PostgresLock } = await import('../../src/index.js');
      const [id] = await inspector.holderIds(PostgresLock.convert(key));
      await inspector.kill(id!);
      await termStarted(2);
      expect(signals[0]!.aborted).to.equal(true);
      expect((signals[0]!.reason as { code?: string }).code).to.equal('ERR_DLOCK_LOST');
      expect(leadership.isLeader).to.equal(true);
      await leadership.stop();
      expect(signals[1]!.aborted).to.equal(true);
      expect(leadership.isLeader).to.equal(false);
      expect(await inspector.holders(PostgresLock.convert(key))).to.equal(0);
    } finally {
      await inspector.close();
    }
  });
});

describe('runAsLeader options', function () {
  it('throws for a bad option or a missing function before campaigning', () => {
    const target = {};
    expectThrowCode(
      () => runAsLeader(target, 'k', async () => undefined, { retryDelay: -1 }),
      'ERR_DLOCK_INVALID_OPTION',
    );
    expectThrowCode(() => runAsLeader(target, 'k', undefined as never), 'ERR_DLOCK_INVALID_OPTION');
  });
});
