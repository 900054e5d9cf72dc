/**
 * Question 6: how much heap does a lock object take while idle, and how much while held?
 * Held locks stack on one key and one connection, so that the server's lock table (shared by
 * all sessions) is not what runs out.
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { createLock, type BaseLock } from './library.js';
import {
  benchKey,
  closeRaw,
  median,
  mysqlConnection,
  pgClient,
  sleep,
  type BenchContext,
  type ResultRow,
} from './runner.js';

const QUESTION = '6. memory';

function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  for (let i = 0; i < 3; i += 1) gc();
  return process.memoryUsage().heapUsed;
}

/**
 * Heap per lock of the locks `create` returns. Synchronous, so that the locks are garbage once it
 * returns: an async caller's frame could keep the previous trial's array alive.
 */
function idleHeapPerLock(gc: () => void, create: () => BaseLock[]): number {
  const before = heapAfterGc(gc);
  const locks = create();
  const after = heapAfterGc(gc);
  return (after - before) / locks.length;
}

export async function memory(ctx: BenchContext): Promise<void> {
  const count = ctx.quick ? 2_000 : 10_000;
  const gc = collector();
  const setups = [
    { name: 'pg.Client', open: () => pgClient(ctx.pgUrl) },
    { name: 'mysql2 connection', open: () => mysqlConnection(ctx.mysqlUrl) },
  ];
  for (const setup of setups) {
    ctx.log(`${QUESTION}: ${setup.name}, ${count} locks`);
    const connection = await setup.open();
    const emitter = connection as unknown as NodeJS.EventEmitter;
    // Each held lock may listen on its connection; the count is reported, not warned about.
    emitter.setMaxListeners(count + 100);
    try {
      const keys = Array.from({ length: count }, (_, i) => `${benchKey('memory')}:${i}`);
      await sleep(50);
      const idleSamples = [1, 2, 3].map(() =>
        idleHeapPerLock(gc, () => keys.map((key) => createLock(connection, key))),
      );

      const sameKey = keys[0]!;
      const before = heapAfterGc(gc);
      const held: BaseLock[] = keys.map(() => createLock(connection, sameKey));
      const idleHeap = heapAfterGc(gc);
      const listenersBefore = emitter.listenerCount('error') + emitter.listenerCount('end');
      for (const lock of held) await lock.acquire({ block: false });
      const heldHeap = heapAfterGc(gc);
      const listenersHeld = emitter.listenerCount('error') + emitter.listenerCount('end');
      for (const lock of held) await lock.release();
      const contender = `knex-dlock on ${setup.name}`;
      const rows: ResultRow[] = [
        {
          question: QUESTION,
          contender,
          metric: 'heap per idle lock',
          unit: 'B',
          median: median(idleSamples),
          samples: count,
        },
        {
          question: QUESTION,
          contender,
          metric: 'heap per held lock',
          unit: 'B',
          median: (heldHeap - before) / count,
          samples: count,
          extra: { holdingAlone: (heldHeap - idleHeap) / count },
        },
        {
          question: QUESTION,
          contender,
          metric: 'connection listeners per held lock',
          unit: '',
          median: (listenersHeld - listenersBefore) / count,
          samples: count,
        },
      ];
      ctx.rows.push(...rows);
    } finally {
      await closeRaw(connection);
    }
  }
}
