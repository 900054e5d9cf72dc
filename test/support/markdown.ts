/**
 * The README and the guides under docs/, read as the tests of their examples need them: fenced
 * code blocks with the marker comment before each, the section each lies in, headings as GitHub
 * anchors, and relative links.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** README.md and every docs/*.md, as paths relative to the repository. */
export function markdownPages(): string[] {
  const guides = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...guides];
}

export interface CodeBlock {
  /** The page, relative to the repository. */
  page: string;
  /** 1-based, counting the blocks of the page's language group (`ts` and `typescript` together). */
  number: number;
  /** The fence's language, as written. */
  lang: string;
  /** The page's line of the first line of the body (1-based). */
  line: number;
  body: string;
  /** The `## ` heading the block is under ('' before the first). */
  section: string;
  /**
   * What the HTML comment right before the block says (blank lines between are allowed), e.g.
   * `run` or `run: mysql`; undefined without one.
   */
  marker: string | undefined;
}

export interface Heading {
  depth: number;
  text: string;
  line: number;
}

export interface Link {
  page: string;
  line: number;
  target: string;
}

export interface ParsedPage {
  blocks: CodeBlock[];
  headings: Heading[];
  links: Link[];
}

const FENCE = /^(`{3,})\s*([\w-]*)/;
const LINK = /\[(?:[^\]\n]|\\\])*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g;

/** Parses `page` (relative to the repository). */
export function parsePage(page: string): ParsedPage {
  const lines = readFileSync(join(ROOT, page), 'utf8').split('\n');
  const parsed: ParsedPage = { blocks: [], headings: [], links: [] };
  const counts = new Map<string, number>();
  let section = '';
  let marker: string | undefined;
  for (let index = 0; index < lines.length; index++) {
    const text = lines[index]!;
    const fence = FENCE.exec(text);
    if (fence) {
      const close = lines.findIndex((l, at) => at > index && l.startsWith(fence[1]!));
      const end = close < 0 ? lines.length : close;
      const lang = fence[2]!;
      const group = lang === 'typescript' ? 'ts' : lang;
      const number = (counts.get(group) ?? 0) + 1;
      counts.set(group, number);
      const body = lines.slice(index + 1, end).join('\n') + '\n';
      parsed.blocks.push({ page, number, lang, line: index + 2, body, section, marker });
      marker = undefined;
      index = end;
      continue;
    }
    const comment = /^<!--\s*(.*?)\s*-->\s*$/.exec(text);
    if (comment) {
      marker = comment[1];
      continue;
    }
    if (text.trim() !== '') marker = undefined;
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(text);
    if (heading) {
      parsed.headings.push({ depth: heading[1]!.length, text: heading[2]!, line: index + 1 });
      if (heading[1] === '##') section = heading[2]!;
    }
    const prose = text.replace(/`[^`]*`/g, '');
    for (const match of prose.matchAll(LINK)) {
      parsed.links.push({ page, line: index + 1, target: match[1]! });
    }
  }
  return parsed;
}

/**
 * The anchors GitHub gives a page's headings: lowercased, punctuation other than `-` and `_`
 * dropped, each space a hyphen, and `-1`, `-2` … after repeats.
 */
export function anchors(headings: readonly Heading[]): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const { text } of headings) {
    const plain = text.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = plain
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const repeats = seen.get(slug) ?? 0;
    seen.set(slug, repeats + 1);
    result.add(repeats === 0 ? slug : `${slug}-${repeats}`);
  }
  return result;
}

/** Whether a block is TypeScript. */
export function isTypeScript(block: CodeBlock): boolean {
  return block.lang === 'ts' || block.lang === 'typescript';
}

/** Which database a runnable block runs against, from its marker; undefined if not runnable. */
export function runsOn(block: CodeBlock): 'pg' | 'mysql' | undefined {
  const marker = /^run(?::\s*(\w+))?$/.exec(block.marker ?? '');
  if (!marker) return undefined;
  const database = marker[1] ?? 'pg';
  if (database !== 'pg' && database !== 'mysql') {
    throw new Error(`${block.page} block ${block.number}: unknown database "${database}"`);
  }
  return database;
}
