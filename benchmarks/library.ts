/**
 * The library under test: the built package (`dist/esm`, what users run), or with `--source`
 * the TypeScript sources through tsx, whose transform adds a few µs per call.
 */
import type * as Library from '../src/index.js';

export type { BaseLock, LockOptions } from '../src/index.js';

export const librarySource = process.argv.includes('--source') ? 'src (tsx)' : 'dist/esm';

const specifier = librarySource === 'dist/esm' ? '../dist/esm/index.js' : '../src/index.js';
const library = (await import(specifier).catch((err: unknown) => {
  throw new Error(`Cannot load ${specifier}: run \`npm run build\` first, or pass --source.`, {
    cause: err,
  });
})) as typeof Library;

export const createLock = library.createLock;
export const withLock = library.withLock;
export const lockConnectionStats = library.lockConnectionStats;
export const closeLockConnections = library.closeLockConnections;
