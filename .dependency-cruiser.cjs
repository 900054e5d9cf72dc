/**
 * The floors of src/, bottom first. A module imports only from its own floor or a floor below;
 * no import goes in a circle. `npm run deps` checks both, and CI runs it. docs/architecture.md
 * says what each floor is for.
 */
const floors = [
  // Typed errors, key normalisation, tracing and diagnostics channels: they import nothing of
  // the library's own.
  { name: 'base', path: '^src/(errors|keys|trace|diagnostics|loss-detection)\\.ts$' },
  // Run one statement on a pinned connection; open, lend, return, destroy. No SQL.
  { name: 'drivers', path: '^src/drivers/' },
  // SQL, key conversion, capabilities, error codes, and plain data the CLI needs.
  { name: 'dialects', path: '^src/dialects/' },
  // Where a lock's connection comes from and when it goes back.
  { name: 'connections', path: '^src/connections/' },
  // The acquire / release / close state machine shared by every database.
  { name: 'lock', path: '^src/lock/' },
  // Each database family's lock class, and the table of them.
  { name: 'locks', path: '^src/locks/' },
  // What users call: createLock, withLock, migrations, inspection, fencing; the public entry.
  { name: 'api', path: '^src/(api/|index\\.ts$)' },
  // The command-line tool, the library's first user.
  { name: 'cli', path: '^src/cli/' },
];

const upward = floors.slice(0, -1).map((floor, index) => ({
  name: `${floor.name}-imports-upward`,
  comment: `The ${floor.name} floor imports only from itself and the floors below it.`,
  severity: 'error',
  from: { path: floor.path },
  to: { path: floors.slice(index + 1).map((above) => above.path) },
}));

const anyFloor = floors.map((floor) => floor.path);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A circle of imports has no bottom: no floor can be read without the others.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...upward,
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to no file is a typo, or a file that moved.',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      name: 'on-no-floor',
      comment: 'Every module in src/ belongs to a floor: add it to `floors` above.',
      severity: 'error',
      from: { path: '^src/', pathNot: anyFloor },
      to: {},
    },
    {
      name: 'imports-a-module-on-no-floor',
      comment: 'Every module in src/ belongs to a floor: add it to `floors` above.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: anyFloor },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a type from a higher floor ties the floors as much as a value.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
