/**
 * redlock 5 beta ships its types at a path its `exports` map does not name, so TypeScript's
 * NodeNext resolution cannot find them; this declares the part the benchmarks use.
 */
declare module 'redlock' {
  import type { Redis } from 'ioredis';

  export interface Lock {
    release(): Promise<unknown>;
  }

  export default class Redlock {
    constructor(
      clients: Iterable<Redis>,
      settings?: { retryCount?: number; retryDelay?: number; retryJitter?: number },
    );
    acquire(resources: string[], duration: number): Promise<Lock>;
  }
}
