/** Scenario: all workers block on the same key. */
import { benchKey, type BenchContext } from '../runner.js';
import { lockLoop } from './lock-loop.js';
import type { Client, Server } from './servers.js';

export function oneKey(
  ctx: BenchContext,
  client: Client,
  database: Server,
  redisTarget: { server: Server; url: string },
): Promise<void> {
  return lockLoop(ctx, client, database, redisTarget, 'one key', (name) => {
    const key = benchKey(`one-${name}`);
    return () => key;
  });
}
