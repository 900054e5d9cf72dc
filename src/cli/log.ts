/** Messages for people, on stderr, so that the command's own stdout stays clean. */
export interface Logger {
  /** Only with --verbose. */
  debug(message: string): void;
  error(message: string): void;
}

export function createLogger(
  verbose: boolean,
  stderr: NodeJS.WritableStream = process.stderr,
): Logger {
  const write = (message: string) => void stderr.write(`knex-dlock: ${message}\n`);
  return {
    debug: verbose ? write : () => undefined,
    error: write,
  };
}
