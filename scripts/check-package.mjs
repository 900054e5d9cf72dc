// Checks the package as it would be published, from the current build (`npm run build` first):
// packs the tarball, lints it with publint (suggestions too), checks its types with
// @arethetypeswrong/cli, and type-checks a consumer project that installs it, with skipLibCheck
// false, for module node16, nodenext and bundler, from ESM and from CommonJS. Exits 1 on any
// problem, after listing them all. A project without @types/node and with skipLibCheck (the
// default of `tsc --init`) must type-check too.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publint } from 'publint';
import ts from 'typescript';
import { formatMessage } from 'publint/utils';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const problems = [];
const windows = process.platform === 'win32';

const CONSUMER = `import { createLock, LockTimeoutError, withLock, type LockTarget } from 'knex-dlock';

export async function nightly(target: LockTarget): Promise<string> {
  const lock = createLock(target, 'nightly-report', { connection: 'dedicated' });
  if (!(await lock.acquire({ timeout: 5_000 }))) throw new LockTimeoutError('taken');
  const lost: AbortSignal | undefined = lock.signal;
  await lock[Symbol.asyncDispose]();
  return withLock(target, 'nightly-report', async (held) => String(held.actualKey) + String(lost));
}
`;

const MODES = [
  ['node16', 'node16'],
  ['nodenext', 'nodenext'],
  ['esnext', 'bundler'],
];

const PLAIN_CONSUMER = `import { createLock, type LockTarget } from 'knex-dlock';

export const tryLock = (target: LockTarget): Promise<boolean> =>
  createLock(target, 'nightly-report').acquire({ block: false });
`;

/** Packs into the work directory; the tarball must hold no source maps and no sources. */
function pack() {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    shell: windows,
  });
  const [{ filename, files, size }] = JSON.parse(out);
  console.log(`== npm pack: ${filename}, ${files.length} files, ${(size / 1024).toFixed(1)} kB`);
  for (const { path } of files) {
    if (path.endsWith('.map') || path.startsWith('src/')) {
      problems.push(`the tarball holds ${path}: it ships neither source maps nor sources`);
    }
  }
  return join(work, filename);
}

async function lint(tarball) {
  console.log('== publint');
  const bytes = readFileSync(tarball);
  const { messages, pkg } = await publint({
    pack: { tarball: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) },
    level: 'suggestion',
    strict: true,
  });
  for (const message of messages) {
    problems.push(`publint ${message.type}: ${formatMessage(message, pkg, { color: false })}`);
  }
  console.log(messages.length === 0 ? 'no messages' : `${messages.length} message(s)`);
}

function arethetypeswrong(tarball) {
  console.log('== @arethetypeswrong/cli');
  const pkg = require.resolve('@arethetypeswrong/cli/package.json');
  const bin = join(dirname(pkg), JSON.parse(readFileSync(pkg, 'utf8')).bin.attw);
  try {
    execFileSync(process.execPath, [bin, tarball, '--format', 'table-flipped'], {
      stdio: 'inherit',
    });
  } catch {
    problems.push('@arethetypeswrong/cli found problems (above)');
  }
}

/**
 * A project with only knex-dlock and @types/node installed, type-checked in each mode with
 * skipLibCheck false; then the plain consumer, without @types/node, with skipLibCheck true.
 */
function typecheckConsumer(tarball) {
  console.log('== consumer project');
  const project = join(work, 'consumer');
  const installed = join(project, 'node_modules/knex-dlock');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  mkdirSync(join(project, 'node_modules/@types'));
  const nodeTypes = ['@types/node', 'undici-types'];
  for (const name of nodeTypes) {
    const from = dirname(require.resolve(`${name}/package.json`));
    symlinkSync(from, join(project, 'node_modules', name), 'junction');
  }
  writeFileSync(join(project, 'index.ts'), CONSUMER);
  for (const type of ['module', 'commonjs']) {
    writeFileSync(join(project, 'package.json'), JSON.stringify({ type, private: true }));
    for (const [module, moduleResolution] of MODES) {
      const mode = `module ${module}, moduleResolution ${moduleResolution}, "type": "${type}"`;
      typecheck(project, mode, { skipLibCheck: false, module, moduleResolution });
    }
  }
  for (const name of nodeTypes) unlinkSync(join(project, 'node_modules', name));
  writeFileSync(join(project, 'index.ts'), PLAIN_CONSUMER);
  const mode = 'no @types/node, skipLibCheck true, module nodenext, "type": "commonjs"';
  typecheck(project, mode, {
    skipLibCheck: true,
    module: 'nodenext',
    moduleResolution: 'nodenext',
  });
}

/** Declarations parsed once for every mode: TypeScript's libs and @types/node. */
const parsed = new Map();

/**
 * What `tsc --noEmit --strict` in the project reports about the project's files and the
 * package's declarations; the declarations of TypeScript's libs and of @types/node are not the
 * package's to check, and skipping them keeps the whole check to seconds.
 */
function typecheck(project, mode, settings) {
  const { options, errors } = ts.convertCompilerOptionsFromJson(
    { strict: true, noEmit: true, target: 'es2022', ...settings },
    project,
  );
  const host = ts.createCompilerHost(options);
  const parse = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, language, ...rest) => {
    if (fileName.startsWith(project)) return parse(fileName, language, ...rest);
    const key = `${fileName} ${language.languageVersion} ${language.impliedNodeFormat}`;
    if (!parsed.has(key)) parsed.set(key, parse(fileName, language, ...rest));
    return parsed.get(key);
  };
  const program = ts.createProgram({ rootNames: [join(project, 'index.ts')], options, host });
  const own = program.getSourceFiles().filter((file) => file.fileName.startsWith(project));
  const diagnostics = [
    ...errors,
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...own.flatMap((file) => [
      ...program.getSyntacticDiagnostics(file),
      ...program.getSemanticDiagnostics(file),
    ]),
  ];
  if (diagnostics.length === 0) {
    console.log(`ok   ${mode}`);
    return;
  }
  console.log(`FAIL ${mode}\n${ts.formatDiagnostics(diagnostics, host)}`);
  problems.push(`the consumer project does not type-check with ${mode}`);
}

if (
  !existsSync(join(root, 'dist/esm/index.d.ts')) ||
  !existsSync(join(root, 'dist/cjs/index.js'))
) {
  console.error('No build to check: run `npm run build` first.');
  process.exit(1);
}

// Real path with forward slashes: how TypeScript names the files it reads.
const work = realpathSync(mkdtempSync(join(tmpdir(), 'knex-dlock-package-'))).replaceAll('\\', '/');
try {
  const tarball = pack();
  await lint(tarball);
  arethetypeswrong(tarball);
  typecheckConsumer(tarball);
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (problems.length > 0) {
  console.error(`\nThe package has ${problems.length} problem(s):\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
console.log('\nThe package checks out.');
