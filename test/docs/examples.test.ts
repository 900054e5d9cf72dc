/**
 * The README and the guides under docs/ as a reader copies from them: every TypeScript block
 * type-checks against the sources, the blocks marked `<!-- run -->` (or `<!-- run: mysql -->`)
 * run against the test databases and exit by themselves, and every relative link leads to a page
 * and a heading that exist.
 *
 * A block is compiled as a module of its own. Names that fragments use without declaring them
 * (`knex`, `pool`, `client`, …) come from the ambient PREAMBLE below; a block that declares one
 * itself shadows it.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { databaseUrls } from '../support/databases.js';
import {
  anchors,
  isTypeScript,
  markdownPages,
  parsePage,
  ROOT,
  runsOn,
  type CodeBlock,
} from '../support/markdown.js';
import { killStarted, startNodeScript } from '../support/processes.js';

/**
 * Pages that another change adds: links to them are allowed while they are missing. Empty it
 * when that change is merged (the test fails once a listed page exists).
 */
const PENDING_PAGES: readonly string[] = [];

/** What the fragments in the pages take as given. */
const PREAMBLE = `
declare const knex: import('knex').Knex;
declare const pool: import('pg').Pool;
declare const client: import('pg').Client;
declare const url: string;
declare const id: number;
declare const jobs: { customer: string; amount: number }[];
declare function buildReport(options?: { signal?: AbortSignal }): Promise<void>;
declare function recompute(invoice: unknown): Promise<number>;
`;

const EXIT_WITHIN_MS = 15_000;

const pages = markdownPages();
const parsed = new Map(pages.map((page) => [page, parsePage(page)]));
const tsBlocks = [...parsed.values()].flatMap((page) => page.blocks.filter(isTypeScript));

function where(block: CodeBlock): string {
  return `${block.page} TypeScript block ${block.number} (line ${block.line})`;
}

function fileName(block: CodeBlock): string {
  return `${block.page.replace(/\W+/g, '-')}-${block.number}.mts`;
}

describe('the examples in the README and the guides', function () {
  this.timeout(60_000);
  let dir = '';

  before(() => {
    const cache = join(ROOT, 'node_modules/.cache');
    mkdirSync(cache, { recursive: true });
    // Inside the repository, so that the blocks' imports of knex, pg and mysql2 resolve.
    dir = mkdtempSync(join(cache, 'knex-dlock-docs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => killStarted());

  it('every TypeScript block type-checks as a module against the sources', () => {
    expect(tsBlocks.length).to.be.greaterThan(10);
    const files = new Map<string, CodeBlock>();
    for (const block of tsBlocks) {
      const file = join(dir, fileName(block));
      // `export {}` keeps a block without imports a module, so blocks do not share names.
      writeFileSync(file, `${block.body}export {};\n`);
      files.set(normalize(file), block);
    }
    const preamble = join(dir, 'preamble.d.ts');
    writeFileSync(preamble, PREAMBLE);
    const program = ts.createProgram([preamble, ...files.keys()], {
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2024.d.ts', 'lib.esnext.disposable.d.ts'],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noUncheckedIndexedAccess: true,
      esModuleInterop: true,
      skipLibCheck: true,
      types: ['node'],
      noEmit: true,
      paths: { 'knex-dlock': [join(ROOT, 'src/index.ts')] },
    });
    const errors = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
      const block = diagnostic.file && files.get(normalize(diagnostic.file.fileName));
      if (!diagnostic.file || diagnostic.start === undefined || !block) {
        const name = diagnostic.file ? relative(ROOT, diagnostic.file.fileName) : 'options';
        return `${name}: ${message}`;
      }
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
      return `${where(block)}, page line ${block.line + line}: ${message}`;
    });
    expect(errors, errors.join('\n')).to.deep.equal([]);
  });

  it('every block marked to run runs against its database and exits by itself', async function () {
    // README's "Quick start" blocks run in readme.test.ts, with their expected output.
    const runnable = tsBlocks.filter(
      (block) => runsOn(block) && !(block.page === 'README.md' && block.section === 'Quick start'),
    );
    if (runnable.length === 0) this.skip();
    const urls = await databaseUrls();
    const source = pathToFileURL(join(ROOT, 'src/index.ts')).href;
    for (const block of runnable) {
      expect(block.body, where(block)).to.contain("from 'knex-dlock';");
      const file = join(dir, `run-${fileName(block)}`);
      writeFileSync(file, block.body.replaceAll("from 'knex-dlock';", `from '${source}';`));
      const run = startNodeScript(file, [], { DATABASE_URL: urls[runsOn(block)!] });
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          run.child.kill('SIGKILL');
          reject(new Error(`${where(block)} did not exit within ${EXIT_WITHIN_MS} ms`));
        }, EXIT_WITHIN_MS);
      });
      try {
        const { code } = await Promise.race([run.exited, late]);
        expect(code, `${where(block)} failed: ${run.stderr()}`).to.equal(0);
        expect(run.stderr(), where(block)).to.equal('');
      } finally {
        clearTimeout(timer);
      }
    }
  });

  it('every relative link leads to an existing page and heading', () => {
    const broken: string[] = [];
    for (const [page, { links }] of parsed) {
      for (const { line, target } of links) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        const [path = '', anchor] = target.split('#');
        const linked = path === '' ? page : normalize(join(dirname(page), path));
        const at = `${page}:${line}: ${target}`;
        if (!existsSync(join(ROOT, linked))) {
          if (!PENDING_PAGES.includes(linked)) broken.push(`${at}: no such file`);
          continue;
        }
        if (anchor === undefined || !linked.endsWith('.md')) continue;
        const headings = parsed.get(linked)?.headings ?? parsePage(linked).headings;
        if (!anchors(headings).has(anchor)) broken.push(`${at}: no heading #${anchor}`);
      }
    }
    expect(broken, broken.join('\n')).to.deep.equal([]);
  });

  it('PENDING_PAGES lists only pages that are still missing', () => {
    for (const page of PENDING_PAGES) {
      expect(existsSync(join(ROOT, page)), `${page} exists: remove it from PENDING_PAGES`).to.equal(
        false,
      );
    }
  });

  it('the README links every guide under docs/', () => {
    const linked = new Set(parsed.get('README.md')!.links.map((link) => link.target.split('#')[0]));
    for (const page of [...pages.slice(1), ...PENDING_PAGES]) {
      expect(linked.has(page), `README links ${page}`).to.equal(true);
    }
  });

  it('a heading anchor follows GitHub: lowercase, punctuation dropped, spaces as hyphens', () => {
    const headings = [
      'Inspecting a lock: `inspectLock`',
      'Failover and replicas',
      'Errors',
      'Errors',
    ];
    const made = anchors(headings.map((text) => ({ depth: 2, text, line: 1 })));
    expect([...made]).to.deep.equal([
      'inspecting-a-lock-inspectlock',
      'failover-and-replicas',
      'errors',
      'errors-1',
    ]);
  });
});
