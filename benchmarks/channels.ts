/**
 * Question 9: what do the diagnostics channels (`knex-dlock:acquire`, `:release`, `:lost`)
 * cost? With nobody subscribed, a cycle pays one subscriber check per acquire and per release:
 * timed here alone, over millions of checks on the library's own channels. With a subscriber on
 * all three, the library CPU per acquire + release cycle on a pg.Client (`process.cpuUsage`,
 * steadier than wall time), against the same cycle with nobody subscribed, in interleaved
 * rounds.
 */
import diagnostics from 'node:diagnostics_channel';
// The library's own check; channels are shared by name, so it sees the built library's too.
import { acquireChannel, releaseChannel, traced } from '../src/diagnostics.js';
import { createLock, type BaseLock } from './library.js';
import {
  benchKey,
  closeRaw,
  cpuPerOperation,
  cpuRow,
  pgClient,
  spread,
  type BenchContext,
  type Contender,
} from './runner.js';

const QUESTION = '9. diagnostics channels';

/** Nanoseconds per subscriber check with nobody subscribed, per sample of `n` checks. */
function checkCost(n: number, samples: number): number[] {
  const out: number[] = [];
  let seen = 0;
  for (let s = 0; s < samples; s += 1) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i += 1) if (traced(i % 2 ? acquireChannel : releaseChannel)) seen += 1;
    out.push(Number(process.hrtime.bigint() - started) / n);
  }
  if (seen !== 0) throw new Error('a subscriber was there');
  return out;
}

/** Acquire (a try) + release cycles of `lock`. */
function tryCycles(lock: BaseLock): Contender {
  return {
    name: 'knex-dlock, acquire({ block: false }) + release',
    async batch(n) {
      for (let i = 0; i < n; i += 1) {
        if (!(await lock.acquire({ block: false }))) throw new Error('the lock was busy');
        await lock.release();
      }
    },
  };
}

/** Subscribes a no-op to every event of the three channels; returns the unsubscribe. */
function subscribeAll(): () => void {
  const noop = () => undefined;
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop };
  const tracing = ['knex-dlock:acquire', 'knex-dlock:release'].map((name) =>
    diagnostics.tracingChannel(name),
  );
  for (const channel of tracing) channel.subscribe(handlers);
  diagnostics.subscribe('knex-dlock:lost', noop);
  return () => {
    for (const channel of tracing) channel.unsubscribe(handlers);
    diagnostics.unsubscribe('knex-dlock:lost', noop);
  };
}

export async function channels(ctx: BenchContext): Promise<void> {
  ctx.log(`${QUESTION}: the check with nobody subscribed`);
  const checks = spread(checkCost(ctx.quick ? 1_000_000 : 5_000_000, ctx.quick ? 5 : 15));
  ctx.rows.push({
    question: QUESTION,
    contender: 'subscriber check, nobody subscribed (twice per cycle)',
    metric: 'per check',
    unit: 'ns',
    ...checks,
  });

  ctx.log(`${QUESTION}: a pg.Client cycle, subscribed and not`);
  const client = await pgClient(ctx.pgUrl);
  try {
    const cycles = tryCycles(createLock(client, benchKey('channels')));
    const rounds = ctx.quick ? 6 : 20;
    const perRound = ctx.quick ? 300 : 1_000;
    await cpuPerOperation(cycles, perRound);
    const quiet: number[] = [];
    const heard: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const order = round % 2 ? ['heard', 'quiet'] : ['quiet', 'heard'];
      for (const which of order) {
        if (which === 'quiet') {
          quiet.push(await cpuPerOperation(cycles, perRound));
        } else {
          const unsubscribe = subscribeAll();
          heard.push(await cpuPerOperation(cycles, perRound));
          unsubscribe();
        }
      }
    }
    const ratios = heard.map((value, i) => value / quiet[i]!);
    ctx.rows.push(cpuRow(QUESTION, 'knex-dlock on pg.Client, nobody subscribed', quiet), {
      ...cpuRow(QUESTION, 'knex-dlock on pg.Client, a subscriber on all three channels', heard),
      ratio: spread(ratios).median,
      baseline: 'nobody subscribed',
    });
  } finally {
    await closeRaw(client);
  }
}
