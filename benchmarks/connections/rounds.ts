/** Interleaved, fixed-duration rounds of the lock-connections question, and their rows. */
import { pairedRatio, sleep, spread, type BenchContext, type ResultRow } from '../runner.js';
import { type Contender, type Round, SAMPLE_EVERY_MS, type Seen, WORKERS } from './servers.js';

export function emptySeen(): Seen {
  return {
    rounds: [],
    before: 0,
    peakServer: 0,
    peakLock: 0,
    serverTotalBefore: 0,
    serverTotalPeak: 0,
    errors: new Map(),
  };
}

/** How many of the server's connections are the contender's, and how many there are. */
export async function count(contender: Contender): Promise<{ own: number; total: number }> {
  const ports = await contender.server.clientPorts();
  const own = new Set<number>();
  for (const socket of contender.sockets) {
    if (socket.destroyed) contender.sockets.delete(socket);
    else if (socket.localPort !== undefined) own.add(socket.localPort);
  }
  return { own: ports.filter((port) => own.has(port)).length, total: ports.length };
}

export async function sample(contender: Contender, seen: Seen): Promise<void> {
  const { own, total } = await count(contender);
  seen.peakServer = Math.max(seen.peakServer, own - seen.before);
  seen.serverTotalPeak = Math.max(seen.serverTotalPeak, total);
  if (contender.lockConnections) {
    seen.peakLock = Math.max(seen.peakLock, contender.lockConnections());
  }
}

export function errorKind(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? ` (cause: ${err.cause.name})` : '';
  return `${err.name}${typeof code === 'string' ? ` ${code}` : ''}${cause}`;
}

/**
 * All workers loop the contender's cycle until `ms` have passed, then finish the cycle they
 * are in; the round lasts until the last one has. Its connections are sampled meanwhile.
 */
export async function runRound(contender: Contender, ms: number, seen: Seen): Promise<Round> {
  let running = true;
  let samplingError: unknown;
  const sampler = (async () => {
    try {
      while (running) {
        await sample(contender, seen);
        await sleep(SAMPLE_EVERY_MS);
      }
    } catch (err) {
      samplingError = err;
    }
  })();
  let ops = 0;
  let failures = 0;
  const perWorker = Array.from({ length: WORKERS }, () => 0);
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, worker) => {
      while (performance.now() < deadline) {
        try {
          await contender.cycle(worker);
          ops += 1;
          perWorker[worker]! += 1;
        } catch (err) {
          failures += 1;
          const kind = errorKind(err);
          seen.errors.set(kind, (seen.errors.get(kind) ?? 0) + 1);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  running = false;
  await sampler;
  if (samplingError !== undefined) throw samplingError;
  return { ops, perWorker, failures, seconds };
}

/** A warm-up round of each (not timed), then `rounds` rounds of each, interleaved. */
export async function interleaveRounds(
  contenders: readonly Contender[],
  options: { rounds: number; ms: number; warmupMs: number },
): Promise<Map<string, Seen>> {
  const seen = new Map<string, Seen>(contenders.map((c) => [c.name, emptySeen()]));
  for (const contender of contenders) {
    const mine = seen.get(contender.name)!;
    const { own, total } = await count(contender);
    mine.before = own;
    mine.serverTotalBefore = total;
  }
  if (options.warmupMs > 0) {
    for (const contender of contenders) {
      await runRound(contender, options.warmupMs, seen.get(contender.name)!);
    }
  }
  for (let round = 0; round < options.rounds; round += 1) {
    for (let i = 0; i < contenders.length; i += 1) {
      const contender = contenders[(round + i) % contenders.length]!;
      const mine = seen.get(contender.name)!;
      mine.rounds.push(await runRound(contender, options.ms, mine));
    }
  }
  return seen;
}

export const rates = (seen: Seen): number[] => seen.rounds.map((r) => r.ops / r.seconds);

/** The median of per-round ratios, or undefined when the baseline completed nothing. */
export function ratioOf(contender: Seen, baseline: Seen): number | undefined {
  const ratio = pairedRatio(rates(contender), rates(baseline));
  return Number.isFinite(ratio) ? ratio : undefined;
}

export function details(seen: Seen): Record<string, unknown> {
  const perWorker = Array.from({ length: WORKERS }, (_, worker) =>
    seen.rounds.reduce((sum, r) => sum + r.perWorker[worker]!, 0),
  );
  return {
    cyclesPerSecondByRound: rates(seen).map((rate) => Math.round(rate)),
    cycles: seen.rounds.reduce((sum, r) => sum + r.ops, 0),
    // How evenly the workers got through: the least and the most cycles one of them completed.
    cyclesPerWorker: { min: Math.min(...perWorker), max: Math.max(...perWorker) },
    failures: seen.rounds.reduce((sum, r) => sum + r.failures, 0),
    errors: Object.fromEntries(seen.errors),
    serverConnectionsBefore: seen.before,
    serverTotalBefore: seen.serverTotalBefore,
    serverTotalPeak: seen.serverTotalPeak,
  };
}

export function cyclesRow(
  question: string,
  contender: string,
  seen: Seen,
  metric: string,
  baseline?: { name: string; seen: Seen },
): ResultRow {
  return {
    question,
    contender,
    metric,
    unit: '/s',
    ...spread(rates(seen)),
    samples: seen.rounds.length,
    ratio: baseline ? ratioOf(seen, baseline.seen) : 1,
    baseline: baseline?.name,
    extra: details(seen),
  };
}

export function connectionRows(question: string, contender: string, seen: Seen): ResultRow[] {
  const rows: ResultRow[] = [
    {
      question,
      contender,
      metric: 'server connections (peak)',
      unit: '',
      median: seen.peakServer,
    },
  ];
  if (seen.peakLock > 0) {
    rows.push({
      question,
      contender,
      metric: 'lock connections (peak, stats)',
      unit: '',
      median: seen.peakLock,
    });
  }
  return rows;
}

export function warnFailures(ctx: BenchContext, question: string, seen: Map<string, Seen>): void {
  for (const [name, mine] of seen) {
    const failures = mine.rounds.reduce((sum, r) => sum + r.failures, 0);
    if (failures > 0) {
      ctx.log(`  ${question}, ${name}: ${failures} failed cycles: ${[...mine.errors.keys()]}`);
    }
  }
}
