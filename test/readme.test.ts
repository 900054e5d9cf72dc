/**
 * A first run as the README describes it: "Install" names the packages it needs, each TypeScript
 * snippet of "Quick start" runs as copied (its import of 'knex-dlock' pointed at the sources)
 * against the test database its `<!-- run -->` marker names, prints what it should and exits by itself, and `npm run example`
 * exits too.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PostgresLock } from '../src/index.js';
import { databaseUrls } from './support/databases.js';
import { isTypeScript, parsePage, runsOn } from './support/markdown.js';
import { killStarted, startNodeScript, type Started } from './support/processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const EXIT_WITHIN_MS = 15_000;
/**
 * How soon a snippet must exit after its last output. Without `knex.destroy()` a script would
 * still exit, but only once the idle lock connection closes, 5 s later.
 */
const EXIT_AFTER_OUTPUT_MS = 2_500;

/** What each quick-start snippet prints, in README order. */
const QUICK_START_OUTPUT = [
  'building the report\n',
  `report built under lock ${PostgresLock.convert('nightly-report')}\n`,
  'pg: holding the lock\n',
  'mysql2: held the named lock nightly-report\n',
];

/** The bodies of the fenced `lang` blocks in the README section under `## heading`. */
function fencedBlocks(heading: string, lang: string): string[] {
  const start = README.indexOf(`\n## ${heading}\n`);
  expect(start, `README section "${heading}"`).to.be.greaterThan(-1);
  const end = README.indexOf('\n## ', start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  const fence = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm');
  return [...section.matchAll(fence)].map((match) => match[1]!);
}

/** Writes `snippet` as an ES module under the cache folder, importing `target` for 'knex-dlock'. */
function writeSnippet(dir: string, index: number, snippet: string, target: string): string {
  expect(snippet, `quick-start snippet ${index + 1}`).to.contain("from 'knex-dlock';");
  const file = join(dir, `quick-start-${index + 1}.mts`);
  writeFileSync(file, snippet.replaceAll("from 'knex-dlock';", `from '${target}';`));
  return file;
}

/** Resolves once `started` exits, or kills it and rejects if it has not within the limit. */
async function exitOf(started: Started): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      started.child.kill('SIGKILL');
      reject(new Error(`did not exit within ${EXIT_WITHIN_MS} ms; printed: ${started.stdout()}`));
    }, EXIT_WITHIN_MS);
  });
  try {
    return (await Promise.race([started.exited, late])).code;
  } finally {
    clearTimeout(timer);
  }
}

describe('README first run', function () {
  this.timeout(3 * EXIT_WITHIN_MS);
  const cache = join(ROOT, 'node_modules/.cache');
  let dir = '';

  before(() => {
    mkdirSync(cache, { recursive: true });
    // Inside the repository, so that the snippets' imports of knex and pg resolve.
    dir = mkdtempSync(join(cache, 'knex-dlock-readme-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => killStarted());

  it('"Install" names the drivers and the TypeScript types, all packages the project knows', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      peerDependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    const known = new Set(['knex-dlock', ...Object.keys(pkg.peerDependencies)]);
    const lines = fencedBlocks('Install', 'sh').flatMap((block) => block.trim().split('\n'));
    const named = lines
      .filter((line) => !line.startsWith('#'))
      .flatMap((line) => {
        expect(line).to.match(/^npm install /);
        return line.split(/\s+/).slice(2);
      })
      .filter((word) => !word.startsWith('-'));
    expect(named).to.include.members(['knex-dlock', 'pg', 'knex', '@types/pg', '@types/node']);
    for (const name of named) {
      const uses = known.has(name) || name in pkg.devDependencies;
      expect(uses, `${name} is a package the project uses`).to.equal(true);
    }
  });

  it('every "Quick start" snippet runs against the database, prints its result and exits', async () => {
    const blocks = parsePage('README.md').blocks.filter(
      (block) => block.section === 'Quick start' && isTypeScript(block),
    );
    expect(blocks, 'a new snippet needs its output in QUICK_START_OUTPUT').to.have.length(
      QUICK_START_OUTPUT.length,
    );
    const source = pathToFileURL(join(ROOT, 'src/index.ts')).href;
    const urls = await databaseUrls();
    for (const [index, { body: snippet, ...block }] of blocks.entries()) {
      const database = runsOn({ body: snippet, ...block });
      expect(database, `quick-start snippet ${index + 1} is marked <!-- run -->`).to.be.a('string');
      const file = writeSnippet(dir, index, snippet, source);
      const run = startNodeScript(file, [], { DATABASE_URL: urls[database!] });
      let printedAt = Date.now();
      run.child.stdout.on('data', () => (printedAt = Date.now()));
      const code = await exitOf(run);
      expect(code, `snippet ${index + 1} failed: ${run.stderr()}`).to.equal(0);
      expect(run.stdout()).to.equal(QUICK_START_OUTPUT[index]);
      expect(run.stderr()).to.equal('');
      expect(
        Date.now() - printedAt,
        'ms from the last output to the exit (knex.destroy() missing?)',
      ).to.be.below(EXIT_AFTER_OUTPUT_MS);
    }
  });

  it('the "Quick start" snippets type-check against the built declarations', async function () {
    if (!existsSync(join(ROOT, 'dist/esm/index.d.ts'))) this.skip();
    const built = relative(dir, join(ROOT, 'dist/esm/index.js')).replaceAll('\\', '/');
    const files = fencedBlocks('Quick start', 'ts').map((snippet, index) =>
      writeSnippet(dir, index, snippet, built),
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const options = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext'];
    options.push('--types', 'node', '--skipLibCheck', '--ignoreConfig');
    const output = await new Promise<string>((resolve) =>
      execFile(process.execPath, [tsc, ...options, ...files], (error, stdout) =>
        resolve(error ? stdout || error.message : ''),
      ),
    );
    expect(output).to.equal('');
  });

  it('`npm run example` exits after both replicas ran on PostgreSQL and MySQL', async () => {
    const urls = await databaseUrls();
    const example = startNodeScript(join(ROOT, 'examples/quick-start.ts'), [], {
      DLOCK_PG_URL: urls.pg,
      DLOCK_MYSQL_URL: urls.mysql,
      DLOCK_PG_EMBEDDED: undefined,
    });
    const code = await exitOf(example);
    expect(code, `the example failed: ${example.stderr()}`).to.equal(0);
    const printed = example.stdout();
    expect(printed)
      .to.match(/^pg:$/m)
      .and.to.match(/^mysql2:$/m);
    // On each database one replica runs the report and the other skips it.
    expect(printed.match(/: holding the lock, building the report$/gm)).to.have.length(2);
    expect(printed.match(/: another replica runs the report; skipping$/gm)).to.have.length(2);
    expect(printed.match(/^ {2}withLock ran on key \S+$/gm)).to.have.length(2);
  });
});
