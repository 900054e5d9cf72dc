/**
 * Fencing tokens from the command line, through the real CLI: `run --fencing` hands the grant's
 * token to the command as DLOCK_FENCING_TOKEN, `setup-fencing` creates the token store. Each
 * test drops the store where it needs it missing, and decides by what the database and the
 * processes report.
 *
 * The MySQL / MariaDB suite is titled "[needs MySQL fencing]": it tests the CLI over the
 * library's MySQL fencing, so while that is not in, its failures come from there.
 */
import { expect } from 'chai';
import { MysqlLock, PostgresLock, setUpFencing } from '../../src/index.js';
import { killStarted, nodeCommand, startCli } from '../support/processes.js';
import { openSession, urlFor, type Session } from '../support/sessions.js';
import { uniqueKey, type DialectName } from '../support/targets.js';
import { libpqVariables, startCliWith } from './cli-env.js';

const EXIT_UNAVAILABLE = 69;
const STORE = 'knex_dlock_fencing';
const VARIABLE = 'DLOCK_FENCING_TOKEN';
/** A user that may connect and read but not create anything in the test database. */
const NO_RIGHTS_USER = 'dlock_nofence';

/** Prints the command's DLOCK_FENCING_TOKEN, or "<unset>", and nothing else. */
const PRINT_TOKEN = nodeCommand(`process.stdout.write(process.env.${VARIABLE} ?? '<unset>')`);

/** What differs between the database families for these tests. */
interface Family {
  readonly dialect: DialectName;
  /** Appended to the suite's title, so that a failure says what it depends on. */
  readonly tag: string;
  /** The line `setup-fencing` prints, up to the connection's description. */
  readonly ready: RegExp;
  /** What the setup statement starts with, as messages must name it. */
  readonly statement: string;
  drop(admin: Session): Promise<void>;
  exists(admin: Session): Promise<boolean>;
  /** Whether any session holds `key`, straight from the server's lock table. */
  held(admin: Session, key: string): Promise<boolean>;
  /** Creates {@link NO_RIGHTS_USER} if missing; resolves `url` with it as the user. */
  noRightsUrl(admin: Session, url: string): Promise<string>;
}

function asUser(url: string, user: string): string {
  const changed = new URL(url);
  changed.username = user;
  changed.password = user;
  return changed.toString();
}

const POSTGRES: Family = {
  dialect: 'postgres',
  tag: '',
  ready: new RegExp(`^fencing tokens are ready: sequence ${STORE} \\(PostgreSQL at [^)]+\\)\\n$`),
  statement: 'CREATE SEQUENCE',
  drop: async (admin) => void (await admin.query(`DROP SEQUENCE IF EXISTS ${STORE}`)),
  exists: async (admin) =>
    (await admin.query(`SELECT to_regclass('${STORE}') IS NOT NULL AS found`))[0]?.found === true,
  async held(admin, key) {
    // pg_advisory_lock(bigint) files the key's high half as classid, its low half as objid.
    const actual = BigInt.asUintN(64, PostgresLock.convert(key));
    const rows = await admin.query(
      'SELECT count(*)::int AS n FROM pg_locks ' +
        "WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid AND objsubid = 1",
      [String(actual >> 32n), String(actual & 0xffffffffn)],
    );
    return rows[0]?.n !== 0;
  },
  async noRightsUrl(admin, url) {
    await admin
      .query(`CREATE ROLE ${NO_RIGHTS_USER} LOGIN PASSWORD '${NO_RIGHTS_USER}'`)
      .catch((err: { code?: string }) => {
        if (err.code !== '42710') throw err; // duplicate_object: made by an earlier run
      });
    const [row] = await admin.query(
      `SELECT has_schema_privilege('${NO_RIGHTS_USER}', 'public', 'CREATE') AS can`,
    );
    // PostgreSQL 15 gives non-owners no CREATE on public; an older default would void the test.
    expect(row?.can, `${NO_RIGHTS_USER} may create in schema public`).to.equal(false);
    return asUser(url, NO_RIGHTS_USER);
  },
};

const MYSQL: Family = {
  dialect: 'mysql',
  tag: ' [needs MySQL fencing]',
  ready: new RegExp(`^fencing tokens are ready: table ${STORE} \\(MySQL at [^)]+\\)\\n$`),
  statement: 'CREATE TABLE',
  drop: async (admin) => void (await admin.query(`DROP TABLE IF EXISTS ${STORE}`)),
  exists: async (admin) =>
    (
      await admin.query(
        'SELECT COUNT(*) AS n FROM information_schema.tables ' +
          'WHERE table_schema = DATABASE() AND table_name = ?',
        [STORE],
      )
    )[0]?.n !== 0,
  held: async (admin, key) =>
    (await admin.query('SELECT IS_USED_LOCK(?) AS holder', [MysqlLock.convert(key)]))[0]?.holder !==
    null,
  async noRightsUrl(admin, url) {
    const database = decodeURIComponent(new URL(url).pathname.slice(1));
    await admin.query(`CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ?`, [
      NO_RIGHTS_USER,
      NO_RIGHTS_USER,
    ]);
    // Enough to connect to the database and take named locks, which need no privilege.
    await admin.query(`GRANT SELECT ON \`${database}\`.* TO ?@'%'`, [NO_RIGHTS_USER]);
    return asUser(url, NO_RIGHTS_USER);
  },
};

for (const family of [POSTGRES, MYSQL]) {
  const { dialect } = family;

  describe(`knex-dlock fencing on ${dialect}${family.tag}`, function () {
    let url: string;
    let admin: Session;

    /** Runs PRINT_TOKEN under `key`; resolves what it printed, after checking the exit code. */
    const printedToken = async (key: string, options: string[], env = {}) => {
      const cli = startCli(
        ['run', '--url', url, '--key', key, ...options, '--', ...PRINT_TOKEN],
        env,
      );
      expect((await cli.exited).code, cli.stderr()).to.equal(0);
      return { token: cli.stdout(), stderr: cli.stderr() };
    };

    before(async () => {
      url = await urlFor(dialect);
      admin = await openSession(dialect);
    });
    after(async () => {
      // Leave the store in place for whatever runs next; on a database where the library cannot
      // set it up yet, the first fenced lock of a user who may creates it all the same.
      await setUpFencing(admin.target).catch(() => undefined);
      await admin.close();
    });
    afterEach(killStarted);

    it('run --fencing gives the command its token, larger on each grant of the key', async () => {
      const key = uniqueKey('fencing');
      const first = await printedToken(key, ['--fencing']);
      expect(first.token).to.match(/^[1-9]\d*$/);
      // A token inherited from outside is replaced, and --verbose logs the new one.
      const second = await printedToken(key, ['--fencing', '--verbose'], { [VARIABLE]: 'stale' });
      expect(second.token).to.match(/^[1-9]\d*$/);
      expect(
        BigInt(second.token) > BigInt(first.token),
        `${second.token} after ${first.token}`,
      ).to.equal(true);
      expect(second.stderr).to.contain(`with fencing token ${second.token}`);
    });

    it('run without --fencing passes no DLOCK_FENCING_TOKEN, even an inherited one', async () => {
      const { token } = await printedToken(uniqueKey('fencing'), [], { [VARIABLE]: '12345' });
      expect(token).to.equal('<unset>');
    });

    it('setup-fencing creates the store when it is missing, and again changes nothing', async () => {
      await family.drop(admin);
      expect(await family.exists(admin)).to.equal(false);
      for (const round of ['creates', 'finds']) {
        const cli = startCli(['setup-fencing', '--url', url]);
        expect((await cli.exited).code, `${round}: ${cli.stderr()}`).to.equal(0);
        expect(cli.stdout()).to.match(family.ready);
        expect(await family.exists(admin)).to.equal(true);
      }
      // The store it made is the one locks take their tokens from.
      expect((await printedToken(uniqueKey('fencing'), ['--fencing'])).token).to.match(/^\d+$/);
    });

    it('for a user who may not create the store, run --fencing exits 69 and keeps no lock', async () => {
      const noRights = await family.noRightsUrl(admin, url);
      await family.drop(admin);
      const key = uniqueKey('fencing');
      const cli = startCli([
        'run',
        '--url',
        noRights,
        '--key',
        key,
        '--fencing',
        '--',
        ...PRINT_TOKEN,
      ]);
      expect((await cli.exited).code, cli.stderr()).to.equal(EXIT_UNAVAILABLE);
      expect(cli.stdout(), 'the command ran').to.equal('');
      expect(cli.stderr()).to.contain(family.statement).and.contain('was not run');
      expect(await family.held(admin, key), 'the lock is still held').to.equal(false);
      expect(await family.exists(admin)).to.equal(false);
    });

    it('for a user who may not create the store, setup-fencing exits 69 naming the statement', async () => {
      const noRights = await family.noRightsUrl(admin, url);
      await family.drop(admin);
      const cli = startCli(['setup-fencing', '--url', noRights]);
      expect((await cli.exited).code, cli.stderr()).to.equal(EXIT_UNAVAILABLE);
      expect(cli.stdout()).to.equal('');
      expect(cli.stderr()).to.contain(`${family.statement} IF NOT EXISTS ${STORE}`);
      expect(await family.exists(admin)).to.equal(false);
    });
  });
}

describe('knex-dlock setup-fencing, connection settings', function () {
  afterEach(killStarted);

  it('reads PostgreSQL settings from the PG* variables and needs no --key', async () => {
    const cli = startCliWith(['setup-fencing'], libpqVariables(await urlFor('postgres')));
    expect((await cli.exited).code, cli.stderr()).to.equal(0);
    expect(cli.stdout()).to.match(POSTGRES.ready);
  });

  it(`takes DATABASE_URL and logs the statement with --verbose${MYSQL.tag}`, async () => {
    const cli = startCliWith(['setup-fencing', '--verbose'], {
      DATABASE_URL: await urlFor('mysql'),
    });
    expect((await cli.exited).code, cli.stderr()).to.equal(0);
    expect(cli.stdout()).to.match(MYSQL.ready);
    expect(cli.stderr()).to.contain('settings from DATABASE_URL').and.contain('CREATE TABLE');
  });

  it('exits 64 without connection settings', async () => {
    const cli = startCliWith(['setup-fencing']);
    expect((await cli.exited).code).to.equal(64);
  });
});
