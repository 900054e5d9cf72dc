/**
 * Opens one connection of a process's own (the CLI's) through a driver package, from the
 * driver's own settings. A dialect names its driver package; this table maps the name to the
 * code that loads and connects it.
 */
import { openMysql2Connection } from './open-mysql2.js';
import { openPgConnection } from './open-pg.js';
import type { OpenedConnection, OpenOptions } from './opening.js';

type Opener = (
  config: Readonly<Record<string, unknown>>,
  options: OpenOptions,
) => Promise<OpenedConnection>;

const OPENERS = {
  pg: openPgConnection,
  mysql2: openMysql2Connection,
} satisfies Readonly<Record<string, Opener>>;

/** A driver package the library can open connections with, e.g. `'pg'`. */
export type OpenableDriver = keyof typeof OPENERS;

/** Opens one connection with `config` through the driver package `driver`. */
export function openConnection(
  driver: OpenableDriver,
  config: Readonly<Record<string, unknown>>,
  options: OpenOptions,
): Promise<OpenedConnection> {
  return OPENERS[driver](config, options);
}
