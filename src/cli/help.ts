/** The help texts of the command line, after commander's own lists of options. */
import { EXIT } from './exit-codes.js';

export const EXIT_CODES_HELP = `
Exit codes:
  the command's own   the command ran; its exit code is passed on
  128+N               the command (or the wait for the lock) was ended by signal N
  ${EXIT.usage}                  bad arguments or setup (missing --key or settings, knexfile, driver not installed)
  ${EXIT.unavailable}                  the database could not be reached or failed, or (--fencing) no fencing
                      token could be taken: the command was not run
  ${EXIT.conflict}                  the lock is held elsewhere (timeout or --no-wait); see --conflict-exit-code
  ${EXIT.lost}                  the lock was lost while the command ran, and the command was stopped
  ${EXIT.cannotExecute} / ${EXIT.notFound}           the command could not be executed / was not found`;

export const CONNECTION_HELP = `
Connection settings (the first one given is used):
  --url <url>, or --knexfile <path> [--env <name>]
  DATABASE_URL
  PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE: any of them means PostgreSQL; pg also
    reads PGSSLMODE, PGAPPNAME and PGCONNECT_TIMEOUT, and fills in what a URL leaves out

URL examples:
  postgres://user:pass@host:5432/db (or postgresql://)
  postgresql://user@/db?host=/var/run/postgresql (a Unix socket)
  postgres://user@%2Fvar%2Frun%2Fpostgresql/db (the same socket)
  mysql://user:pass@host:3306/db (or mariadb://)
  mysql://user@localhost/db?socketPath=/run/mysqld/mysqld.sock (a Unix socket)`;

export const RUN_EXAMPLE =
  'knex-dlock run --key migrations --timeout 5m -- npx knex migrate:latest';

export const FENCING_HELP = `
Fencing tokens (--fencing):
  Each grant of the lock takes a token larger than that of every earlier grant of the same
  key, and the command gets it as DLOCK_FENCING_TOKEN (decimal digits). Pass it along with
  each write to a storage that remembers the largest token it has seen and refuses smaller
  ones: a run that lost the lock without knowing can then no longer write.
  Without --fencing, the command never sees DLOCK_FENCING_TOKEN, even if it is set where
  knex-dlock runs: a token inherited from an outer run belongs to another grant (or another
  lock), and passed on it would look current to a command that is not fenced by it.
  The first fenced lock creates what the tokens come from; where the user may not create it,
  run \`knex-dlock setup-fencing\` once as one who may.`;

export const SETUP_FENCING_HELP = `
Exit codes:
  0                   it exists (it was created, or it was there already)
  ${EXIT.usage}                  bad arguments or setup (missing settings, knexfile, driver not installed)
  ${EXIT.unavailable}                  the database could not be reached or failed, e.g. this user may not
                      create it: the message names the statement to run as one who may`;
