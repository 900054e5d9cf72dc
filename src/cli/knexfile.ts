import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { dialectModule, dialectModules } from '../dialects/registry.js';
import { DlockError, InvalidOptionError, UnsupportedTargetError } from '../errors.js';
import type { CliDialect, ConnectionSettings } from './settings.js';

/** knex `client` names (and aliases) the CLI can lock through, and their database family. */
const TYPESCRIPT = new Set(['.ts', '.mts', '.cts']);

type Dict = Record<string, unknown>;

/**
 * Reads the connection of one environment of a knexfile as the knex CLI does: the module's
 * default export (or its exports), called if it is a function and awaited; then the entry for
 * `envName` (default: NODE_ENV, else `development`), or the export itself if it is one config.
 * A `connection` function is called once and awaited. The file is loaded with the working
 * directory set to its own, as the knex CLI does, so `.env` files and relative paths resolve.
 */
export async function readKnexfile(
  path: string,
  envName: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<ConnectionSettings> {
  const file = resolve(path);
  if (!existsSync(file)) {
    const where = file === path ? '' : ` (looked for ${file})`;
    throw new InvalidOptionError(
      `The knexfile ${path} does not exist${where}: pass --knexfile the path of your ` +
        'knexfile, e.g. --knexfile ./knexfile.js.',
    );
  }
  const cwd = process.cwd();
  process.chdir(dirname(file));
  try {
    const exported = await settle(await loadKnexfile(path, file));
    const chosen: Environment = envName
      ? { name: envName, by: '--env' }
      : env.NODE_ENV
        ? { name: env.NODE_ENV, by: 'NODE_ENV' }
        : { name: 'development', by: 'default' };
    const config = await environmentOf(path, exported, chosen);
    const where = config.name === undefined ? '' : ` (environment "${config.name}")`;
    return await settingsOf(`the knexfile ${path}${where}`, config.value);
  } catch (err) {
    if (err instanceof DlockError) throw err;
    // The knexfile's own code failed: a syntax error, a missing module, a throwing function.
    throw new InvalidOptionError(
      `Reading the knexfile ${path} failed: ${err instanceof Error ? err.message : String(err)}. ` +
        'Check that `node` can load it; knex-dlock reads it as the knex CLI does.',
    );
  } finally {
    process.chdir(cwd);
  }
}

async function loadKnexfile(path: string, file: string): Promise<unknown> {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return JSON.parse(await readFile(file, 'utf8'));
  const mod: unknown = TYPESCRIPT.has(ext)
    ? await importTypeScript(path, file)
    : await import(pathToFileURL(file).href);
  return defaultExport(mod);
}

/**
 * The default export if there is one, else the module's exports, as knex takes them; a
 * transpiled module's `exports.default` (under `__esModule`) counts as its default export.
 */
function defaultExport(mod: unknown): unknown {
  const exported = (mod as { default?: unknown }).default ?? mod;
  const transpiled = exported as { __esModule?: unknown; default?: unknown } | null;
  return transpiled?.__esModule && transpiled.default !== undefined ? transpiled.default : exported;
}

/**
 * Imports a TypeScript knexfile. tsx (https://tsx.is) does it on every supported Node version;
 * knex-dlock does not depend on it, so it is looked for next to the knexfile (the project's own)
 * and then next to knex-dlock. Without it, Node's own type stripping may still load the file.
 */
async function importTypeScript(path: string, file: string): Promise<unknown> {
  const url = pathToFileURL(file).href;
  const tsx = await findTsx(file);
  if (tsx) return tsx.tsImport(url, url);
  try {
    return await import(url);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (
      code !== 'ERR_UNKNOWN_FILE_EXTENSION' &&
      code !== 'ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING'
    ) {
      throw err;
    }
    throw new UnsupportedTargetError(
      `The knexfile ${path} is TypeScript, and reading it needs the "tsx" package, which is ` +
        'not installed: run `npm install --save-dev tsx` in your project, or pass a JavaScript ' +
        'or JSON knexfile.',
    );
  }
}

interface Tsx {
  tsImport(specifier: string, parentURL: string): Promise<unknown>;
}

async function findTsx(file: string): Promise<Tsx | undefined> {
  const candidates: (() => Promise<unknown>)[] = [
    () => import(tsxApiNextTo(file)),
    () => import('tsx/esm/api'),
  ];
  for (const load of candidates) {
    try {
      const { tsImport } = (await load()) as Partial<Tsx>;
      if (typeof tsImport === 'function') return { tsImport };
    } catch {
      // Not installed there: try the next place.
    }
  }
  return undefined;
}

/**
 * The URL of tsx's ESM API as resolved from `file`'s directory. `require.resolve` would pick
 * the CommonJS entry, which cannot import ES modules, so the package's exports map is read.
 */
function tsxApiNextTo(file: string): string {
  const manifest = createRequire(file).resolve('tsx/package.json');
  const { exports } = JSON.parse(readFileSync(manifest, 'utf8')) as {
    exports?: Record<string, { import?: string | { default?: string } }>;
  };
  const entry = exports?.['./esm/api']?.import;
  const target = typeof entry === 'string' ? entry : entry?.default;
  if (!target) throw new Error('tsx without an ESM API');
  return pathToFileURL(join(dirname(manifest), target)).href;
}

/** Calls a function export and awaits a promise, as knex does with a knexfile's export. */
async function settle(value: unknown): Promise<unknown> {
  return typeof value === 'function' ? await (value as () => unknown)() : await value;
}

function isObject(value: unknown): value is Dict {
  return typeof value === 'object' && value !== null;
}

/** Whether a knexfile's export is one configuration rather than one per environment. */
function isConfig(value: Dict): boolean {
  return 'client' in value || 'dialect' in value || 'connection' in value;
}

/** The environment to read, and what chose it: --env, NODE_ENV, or knex's default. */
interface Environment {
  readonly name: string;
  readonly by: '--env' | 'NODE_ENV' | 'default';
}

async function environmentOf(
  path: string,
  exported: unknown,
  { name, by }: Environment,
): Promise<{ name: string | undefined; value: Dict }> {
  if (!isObject(exported)) {
    throw new InvalidOptionError(
      `The knexfile ${path} exports ${describe(exported)}, not a knex configuration: export ` +
        '{ client, connection }, or one such object per environment ({ development: {…} }).',
    );
  }
  if (Object.hasOwn(exported, name)) {
    const value = await exported[name];
    if (isObject(value)) return { name, value };
    throw new InvalidOptionError(
      `The environment "${name}" of the knexfile ${path} is ${describe(value)}, not a knex ` +
        'configuration: make it { client, connection }.',
    );
  }
  // As knex does: a knexfile that is one configuration serves every environment.
  if (isConfig(exported)) return { name: undefined, value: exported };
  const known = Object.keys(exported).filter((key) => key !== 'default' && key !== '__esModule');
  throw new InvalidOptionError(
    `The knexfile ${path} has no environment "${name}"` +
      `${by === '--env' ? '' : by === 'NODE_ENV' ? ' (from NODE_ENV)' : ' (the default)'}; it has ` +
      `${known.length > 0 ? known.map((key) => `"${key}"`).join(', ') : 'none'}: ` +
      'pass --env with one of them.',
  );
}

async function settingsOf(source: string, config: Dict): Promise<ConnectionSettings> {
  const client = config.client ?? config.dialect;
  if (client === undefined || client === null || client === '') {
    throw new InvalidOptionError(
      `${capitalized(source)} has no client: set client to the driver's name (pg or mysql2, ` +
        'for instance), as knex needs too.',
    );
  }
  const dialect =
    typeof client === 'string'
      ? dialectModules().find(([, family]) => family.cli.knexClients.includes(client))?.[0]
      : undefined;
  if (!dialect) {
    throw new UnsupportedTargetError(
      `The client ${typeof client === 'string' ? `"${client}"` : `(${describe(client)})`} of ${source} ` +
        `is not one knex-dlock can lock through: use ${knownClients()}.`,
    );
  }
  return { dialect, config: await connectionOf(source, dialect, config.connection), source };
}

/** knex's `connection`: a URL, an object, or a function of either (called once here). */
async function connectionOf(source: string, dialect: CliDialect, connection: unknown) {
  const value = await settle(connection);
  if (value === undefined || value === null) return {};
  if (typeof value === 'string') {
    return dialectModule(dialect).cli.settingsFromUrl(value);
  }
  if (typeof value === 'object') {
    // knex's hook for a connection function's expiry; the drivers know nothing of it.
    const settings: Dict = { ...value };
    delete settings.expirationChecker;
    return settings;
  }
  throw new InvalidOptionError(
    `The connection of ${source} is ${describe(value)}: use a URL string, an object of the ` +
      "driver's settings, or a function that returns one.",
  );
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return 'a function';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

/** The knexfile clients of every registered family, for messages: "pg, … (PostgreSQL), …". */
function knownClients(): string {
  return dialectModules()
    .map(([, family]) => `${family.cli.knexClients.join(', ')} (${family.dialect.title})`)
    .join('; ');
}
