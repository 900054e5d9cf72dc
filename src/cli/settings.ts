/** What the CLI resolves its connection settings to, wherever they were found. */
import type { DialectName } from '../dialects/registry.js';

/** The database family the CLI talks to: it decides the driver and the lock SQL. */
export type CliDialect = DialectName;

/** Where the CLI's connection comes from, resolved: the driver settings and their origin. */
export interface ConnectionSettings {
  readonly dialect: CliDialect;
  /**
   * The driver's own settings: a `pg` ClientConfig (`{ connectionString }`, a knexfile's
   * connection object, or `{}` so that pg reads the PG* variables) or mysql2 ConnectionOptions
   * (`{ uri }` or a knexfile's connection object).
   */
  readonly config: Readonly<Record<string, unknown>>;
  /** Where the settings were found, for messages: `--url`, `DATABASE_URL`, `knexfile …`. */
  readonly source: string;
}
