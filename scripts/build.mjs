// Builds dist/esm and dist/cjs from the same sources with tsc, then marks the CommonJS half
// so that Node reads its .js files as CommonJS although the package is "type": "module".
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
const run = (...args) => execFileSync(process.execPath, [tsc, ...args], { stdio: 'inherit' });

run('-p', 'tsconfig.build.json', '--outDir', 'dist/esm');
run(
  '-p',
  'tsconfig.build.json',
  '--outDir',
  'dist/cjs',
  '--module',
  'commonjs',
  '--moduleResolution',
  'bundler',
);
mkdirSync('dist/cjs', { recursive: true });
writeFileSync('dist/cjs/package.json', JSON.stringify({ type: 'commonjs' }) + '\n');
