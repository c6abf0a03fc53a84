// Transparency: node-postgres's own integration tests (the suites the npm registry ships
// inside pg-cursor and pg-pool, run against the pg driver this project uses), once
// straight against a real PostgreSQL 15 and once through the sidecar with a policy that
// allows everything. Every test that passes straight must pass through the proxy, except
// the ones listed in THROUGH_PROXY_DIFFERS with the reason.
//
// Which suites: the newest releases that still ship their tests (pg-cursor 2.13, pg-pool
// 3.8, pg-query-stream 3.3): cursors and portals suspended at a row limit, pools,
// errors, backend terminations, streams. pg's own test/integration tree is not published
// to npm, and Debian's source packages (node-postgres, psycopg3) cannot be fetched here.
// About 140 tests, run whole, well under a minute each way.
//
// No test here authenticates the client to the server itself, so none is exempt for that
// reason; the suites connect with PGUSER/PGPASSWORD, which the proxy's trust mode accepts
// and the server checks with SCRAM.

import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { startHarness, AGENT_PASSWORD } from './harness.js';
import type { Harness } from './harness.js';

const require = createRequire(import.meta.url);
const MOCHA = require.resolve('mocha/bin/mocha.js');
const suiteDir = (pkg: string) => path.join(path.dirname(require.resolve(`${pkg}/package.json`)), 'test');
/**
 * Left out: pg-query-stream's helper.js (a module the others load), and pauses.js and
 * stream-tester*.js, whose stream-spec/stream-tester dependencies install from a git
 * tarball outside the npm registry.
 */
const NOT_RUN = new Set(['helper.js', 'pauses.js', 'stream-tester.js', 'stream-tester-timestamp.js']);
const SUITE_FILES = ['pg-cursor', 'pg-pool-suite', 'pg-query-stream-suite'].flatMap((pkg) =>
  fs
    .readdirSync(suiteDir(pkg))
    .filter((f) => f.endsWith('.js') && !NOT_RUN.has(f))
    .sort()
    .map((f) => path.join(suiteDir(pkg), f)),
);

/** Tests whose outcome through the proxy differs by design, with why (full mocha titles). */
const THROUGH_PROXY_DIFFERS: Record<string, string> = {};

/**
 * Tests that assert wall-clock windows, so their outcome depends on the machine's load on
 * either path (measured here: 10 connections plus a query take 70-110 ms straight and
 * through the proxy alike). Either outcome is accepted.
 */
const TIMING_BOUND: Record<string, string> = {
  'events emits acquire every time a client is acquired': 'expects 10 connections and 10 queries to finish within 100 ms',
};

const ALLOW_EVERYTHING = `apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: driver-suite }
spec:
  default: allow
  rules:
    - name: builtin:procedural-code
      description: the driver suites are trusted code; nothing here needs approval
      postgres: { statements: [do, call, other] }
      action: allow
`;

interface Outcome {
  passed: Set<string>;
  failed: Map<string, string>;
}

function runSuite(env: NodeJS.ProcessEnv, out: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      // pg-pool's setup.js exits on any process warning; pg 8.23 warns about the deprecated
      // calls these older suites make, straight and proxied alike.
      ['--no-deprecation', MOCHA, '--no-config', '--reporter', 'json', '--reporter-option', `output=${out}`, '--timeout', '10000', '--exit', ...SUITE_FILES],
      { env: { ...process.env, ...env }, timeout: 240_000, maxBuffer: 64 * 1024 * 1024 },
      () => {
        // Failing tests make mocha exit non-zero: the report says which.
        try {
          const report = JSON.parse(fs.readFileSync(out, 'utf8')) as { passes: { fullTitle: string }[]; failures: { fullTitle: string; err: { message?: string } }[] };
          resolve({
            passed: new Set(report.passes.map((t) => t.fullTitle)),
            failed: new Map(report.failures.map((t) => [t.fullTitle, t.err.message ?? ''])),
          });
        } catch (err) {
          reject(new Error(`the driver suite did not produce a report: ${(err as Error).message}`));
        }
      },
    );
  });
}

describe('sidecar postgres: node-postgres\'s own test suites, straight and through the proxy', function () {
  this.timeout(600_000);
  let h: Harness;
  let straight: Outcome;
  let proxied: Outcome;

  before(async () => {
    h = await startHarness();
    fs.writeFileSync(h.policyFile, ALLOW_EVERYTHING);
    await h.startProxy();
    const common = { PGUSER: 'agent_rw', PGPASSWORD: AGENT_PASSWORD, PGDATABASE: 'payments', PGHOST: '127.0.0.1' };
    straight = await runSuite({ ...common, PGPORT: String(h.cluster.port) }, path.join(h.dir, 'straight.json'));
    proxied = await runSuite({ ...common, PGPORT: String(h.proxyPort) }, path.join(h.dir, 'proxied.json'));
  });
  after(async () => h?.stop());

  it('runs the suites straight with most tests passing (the baseline is real)', () => {
    expect(straight.passed.size).to.be.greaterThan(120);
  });

  it('passes through the proxy every test that passes straight', () => {
    const regressions = [...straight.passed].filter((t) => !proxied.passed.has(t) && !(t in THROUGH_PROXY_DIFFERS) && !(t in TIMING_BOUND)).map((t) => `${t}: ${proxied.failed.get(t) ?? 'did not run'}`);
    expect(regressions).to.deep.equal([]);
  });

  it('lists only exceptions that still differ', () => {
    const stale = Object.keys(THROUGH_PROXY_DIFFERS).filter((t) => proxied.passed.has(t) || !straight.passed.has(t));
    expect(stale).to.deep.equal([]);
  });
});
