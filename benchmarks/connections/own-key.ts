/** Scenario: every worker locks a key of its own, so nothing contends. */
import { benchKey, type BenchContext } from '../runner.js';
import { lockLoop } from './lock-loop.js';
import { WORKERS, type Client, type Server } from './servers.js';

export function ownKeyEach(
  ctx: BenchContext,
  client: Client,
  database: Server,
  redisTarget: { server: Server; url: string },
): Promise<void> {
  return lockLoop(ctx, client, database, redisTarget, 'own key each', (name) => {
    const keys = Array.from({ length: WORKERS }, () => benchKey(`own-${name}`));
    return (worker) => keys[worker]!;
  });
}
