/**
 * The one jest configuration (`make test` runs it through dist/scripts/test.js).
 *
 * Tests are TypeScript compiled by `tsc` with the rest of the project, so jest runs the compiled
 * files under dist/test: the code under test is exactly what `ca-proxy` runs, compiled once.
 * Coverage uses V8's own counters and the source maps tsc writes, so it is reported per .ts file.
 */
const ESM_ONLY = ['@kubernetes/client-node', 'openid-client', 'oauth4webapi', 'jose'];

module.exports = {
  rootDir: __dirname,
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testEnvironment: 'node',
  // Two cores: two test files at a time (each may start openssl, curl or a child ca-proxy).
  maxWorkers: 2,
  // Integration tests start real peers and PKIs; no single test may hang the run.
  testTimeout: 60_000,
  // Our code is not transformed. ESM-only dependencies (@kubernetes/client-node 1.x and what it
  // imports) are compiled to CommonJS for jest, which cannot require() ESM before Node 24.9
  // (Node 20 itself can: production loads them as they are).
  transform: { [`/node_modules/(${ESM_ONLY.join('|')})/.+\\.js$`]: ['babel-jest', { babelrc: false, configFile: false, plugins: ['@babel/plugin-transform-modules-commonjs'] }] },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_ONLY.join('|')})/)`],
  coverageProvider: 'v8',
  collectCoverageFrom: ['<rootDir>/dist/internal/**/*.js', '<rootDir>/dist/cmd/**/*.js'],
  coverageDirectory: '<rootDir>/coverage',
  coverageReporters: ['json-summary', 'text-summary'],
  reporters: ['default'],
  verbose: false,
};
