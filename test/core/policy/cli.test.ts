import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/core/policy → repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const MAIN = path.join(ROOT, 'dist/cli/main.js');
const PAYMENTS = path.join(ROOT, 'examples/policies/payments.yaml');
const SA = 'system:serviceaccount:payments:agent';

function agentgate(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('agentgate policy (CLI)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-policy-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('check', () => {
    it('prints a summary and exits 0 for a valid policy', () => {
      const r = agentgate('policy', 'check', '-f', 'examples/policies/payments.yaml');
      expect(r.code).to.equal(0);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.equal(
        [
          "examples/policies/payments.yaml: policy 'payments-agents' is valid",
          '  rules:       7 (2 allow, 2 approve, 3 deny)',
          '  built-ins:   builtin:dangerous-functions, builtin:procedural-code, builtin:discovery, builtin:impersonation',
          '  default:     deny',
          '  enforcement: enforce',
          '  masking:     pan last4, secrets mask, 0 extra field(s), 1 column(s)',
          '  warnings:    0',
          '',
        ].join('\n'),
      );
    });

    it('prints every error as file:line:col: message and exits 1 for an invalid policy', () => {
      const r = agentgate('policy', 'check', '-f', 'examples/policies/invalid.yaml');
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal('');
      expect(r.stderr.split('\n')).to.deep.equal([
        "examples/policies/invalid.yaml:6:12: spec.default: unknown value 'maybe' (expected one of: deny, allow)",
        "examples/policies/invalid.yaml:9:40: spec.rules[0].postgres.statements[1]: unknown value 'upsert' (expected one of: select, insert, update, delete, merge, copy-to, copy-from, truncate, drop, create, alter, grant, revoke, set, show, transaction, call, do, lock, listen, notify, other, delete-without-where, update-without-where)",
        "examples/policies/invalid.yaml:9:49: spec.rules[0].postgres.tabels: unknown key (did you mean 'tables'?)",
        'examples/policies/invalid.yaml:11:13: spec.rules[1] (read): duplicate rule name (first used by spec.rules[0])',
        "examples/policies/invalid.yaml:12:34: spec.rules[1].kubernetes.verbs[1]: unknown value 'fetch' (expected one of: get, list, watch, create, update, patch, delete, deletecollection, impersonate, proxy, head, options, post, put, *)",
        "examples/policies/invalid.yaml:12:54: spec.rules[1] (read): kubernetes.resources[0]: 'pods/exec/x' is not resource or resource/subresource",
        'examples/policies/invalid.yaml:14:7: spec.rules[2] (empty): the rule names nothing to match, so it would match every request; name subjects, groups, kubernetes or postgres (use spec.default for a catch-all)',
        'examples/policies/invalid.yaml: invalid policy (7 errors)',
        '',
      ]);
    });

    it('warns about shadowed rules on stderr and still exits 0', () => {
      const f = path.join(dir, 'shadow.yaml');
      writeFileSync(f, 'apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: s }\nspec:\n  rules:\n    - { name: do-it, postgres: { statements: [do] }, action: allow }\n');
      const r = agentgate('policy', 'check', '-f', f);
      expect(r.code).to.equal(0);
      expect(r.stderr).to.equal(
        `${f}:6:15: warning: rule 'do-it' (allow) can never take effect: rule 'builtin:procedural-code' (approve) matches every request it matches and is more restrictive; to change a built-in rule, define a rule named 'builtin:procedural-code' in its place\n`,
      );
      expect(r.stdout).to.contain('  warnings:    1\n');
    });

    it('reports a missing file as an error with exit 1', () => {
      const r = agentgate('policy', 'check', '-f', path.join(dir, 'nope.yaml'));
      expect(r.code).to.equal(1);
      expect(r.stderr).to.equal(`${path.join(dir, 'nope.yaml')}:1:1: cannot read policy file: no such file\n${path.join(dir, 'nope.yaml')}: invalid policy (1 error)\n`);
    });

    it('prints JSON with -o json', () => {
      const r = agentgate('policy', 'check', '-f', PAYMENTS, '-o', 'json');
      expect(r.code).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out.valid).to.equal(true);
      expect(out.policy).to.equal('payments-agents');
      expect(out.rules).to.equal(7);
    });
  });

  describe('explain', () => {
    it('explains a Kubernetes request: decision, winning rule, reason and matched rules', () => {
      const r = agentgate('policy', 'explain', '-f', 'examples/policies/payments.yaml', '--subject', SA, '--kube', 'DELETE /api/v1/namespaces/payments/secrets/keys');
      expect(r.code).to.equal(0);
      expect(r.stdout).to.equal(
        [
          'policy:   payments-agents (default deny, enforcement enforce)',
          `subject:  ${SA}`,
          '',
          "request:  kubernetes delete secrets 'keys' in namespace 'payments'",
          '          verb=delete apiGroup="" apiVersion=v1 namespace="payments" resource=secrets subresource="" name="keys"',
          'decision: deny',
          'rule:     no-secrets',
          `reason:   denied by rule 'no-secrets' of policy 'payments-agents' (Secrets are read by the sidecar only): it does not allow ${SA} to delete secrets 'keys' in namespace 'payments'; to get access, ask the owners of policy 'payments-agents' to change that rule (\`agentgate policy explain\` shows every rule that matched)`,
          'matched:',
          '  * no-secrets  deny',
          '',
        ].join('\n'),
      );
    });

    it('shows every matched rule and the approval settings for exec', () => {
      const r = agentgate('policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--group', 'sre', '--kube', 'GET /api/v1/namespaces/payments/pods/web-0/exec?command=sh');
      expect(r.code).to.equal(0);
      expect(r.stdout).to.contain(`subject:  ${SA} (groups: sre)\n`);
      expect(r.stdout).to.contain('decision: approve\nrule:     exec-needs-approval\n');
      expect(r.stdout).to.contain('approval: mode defer, scope window (30 min), wait 120s, 2 approval(s) from sre\n');
      expect(r.stdout).to.contain('matched:\n  * exec-needs-approval  approve\n');
    });

    it('explains discovery through the built-in fallback', () => {
      const r = agentgate('policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--kube', 'GET /apis/apps/v1', '-o', 'json');
      expect(r.code).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out.decision).to.deep.equal({ action: 'allow', rule: 'builtin:discovery', reason: "allowed by rule 'builtin:discovery' of policy 'payments-agents'", enforced: true, matched: ['builtin:discovery'] });
    });

    it('explains SQL, one operation per statement, with the most restrictive overall', function () {
      const r = agentgate('policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--sql', 'SELECT * FROM cards; DROP TABLE orders', '--connection', 'payments', '-o', 'json');
      if (r.stderr.includes('SQL classification not available')) this.skip();
      expect(r.code).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out.operations.map((o: { decision: { action: string; rule: string } }) => [o.decision.action, o.decision.rule])).to.deep.equal([
        ['allow', 'read-cards'],
        ['deny', 'no-destruction'],
      ]);
      expect(out.decision.rule).to.equal('no-destruction');
    });

    it('explains SQL with every function it calls and why each is open or not', () => {
      const f = path.join(dir, 'functions.yaml');
      writeFileSync(
        f,
        'apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: fns }\nspec:\n  rules:\n    - { name: reads, postgres: { statements: [select], functions: [pg_catalog.nextval, "public.*"] }, action: allow }\n',
      );
      const r = agentgate('policy', 'explain', '-f', f, '--subject', SA, '--sql', "SELECT lower(pan), nextval('s'), crosstab('x') FROM cards", '--connection', 'payments');
      expect(r.code).to.equal(0);
      const start = r.stdout.indexOf('functions:');
      expect(r.stdout.slice(start, r.stdout.indexOf('decision:'))).to.equal(
        [
          'functions:',
          '  + lower               read-only: ok',
          '                        a PostgreSQL 15 built-in without side effects that runs no SQL text: allowed without a rule',
          '  + pg_catalog.nextval  side-effects: ok, named by reads',
          '                        a PostgreSQL 15 built-in that may write, lock, signal or change state: an allow rule must name it',
          '  ! public.crosstab     runs-sql: NOT OPEN: reads (by a pattern with *, which does not open it)',
          '                        runs SQL given as text (or over whole tables) that the proxy never sees: only an allow rule naming it exactly, without *, opens it',
          '  (one allow rule must name every function that needs naming; names from different rules do not add up)',
          '',
        ].join('\n'),
      );
      const json = JSON.parse(agentgate('policy', 'explain', '-f', f, '--subject', SA, '--sql', 'SELECT purge()', '--connection', 'payments', '-o', 'json').stdout);
      expect(json.operations[0].functions).to.deep.equal([
        { name: 'public.purge', class: 'unknown', reason: 'not a PostgreSQL 15 built-in (user-defined or extension): the proxy cannot see what it does, so an allow rule must name it', namedBy: ['reads'], covered: true },
      ]);
      expect(json.decision.rule).to.equal('reads');
    });

    it('explains SQL that does not parse as refused, with exit 1', function () {
      const r = agentgate('policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--sql', 'SELEC 1', '--connection', 'payments');
      if (r.stderr.includes('SQL classification not available')) this.skip();
      expect(r.code).to.equal(1);
      expect(r.stderr).to.equal('agentgate policy explain: SQL is refused before any rule applies (SQLSTATE 42601): syntax error at or near "SELEC" at character 1\n');
    });

    it('decides Impersonate-* headers as impersonate operations', () => {
      const r = agentgate('policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--kube', 'GET /api/v1/namespaces/payments/pods', '-H', 'Impersonate-User: admin', '-H', 'Impersonate-Group: system:masters', '-o', 'json');
      expect(r.code).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out.operations.map((o: { request: { verb: string; resource: string; name: string }; decision: { action: string; rule: string } }) => [o.request.verb, o.request.resource, o.request.name, o.decision.action, o.decision.rule])).to.deep.equal([
        ['list', 'pods', '', 'allow', 'read-workloads'],
        ['impersonate', 'users', 'admin', 'deny', 'builtin:impersonation'],
        ['impersonate', 'groups', 'system:masters', 'deny', 'builtin:impersonation'],
      ]);
      expect(out.decision.rule).to.equal('builtin:impersonation');
    });

    it('refuses an explain on an invalid policy with exit 1', () => {
      const r = agentgate('policy', 'explain', '-f', 'examples/policies/invalid.yaml', '--subject', SA, '--kube', 'GET /version');
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/examples\/policies\/invalid.yaml: invalid policy, nothing to explain \(see agentgate policy check\)\n$/);
    });

    it('reports a malformed --kube request with exit 1', () => {
      const r = agentgate('policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--kube', 'GET api/v1/pods');
      expect(r.code).to.equal(1);
      expect(r.stderr).to.equal('agentgate policy explain: expected "METHOD /path?query", got \'GET api/v1/pods\'\n');
    });
  });

  describe('bad flags exit 2 with one line', () => {
    const cases: [string[], string][] = [
      [['policy', 'check'], 'agentgate policy: missing -f FILE (see agentgate policy --help)\n'],
      [['policy', 'check', '-f', PAYMENTS, '--frobnicate'], "agentgate policy: Unknown option '--frobnicate' (see agentgate policy --help)\n"],
      [['policy', 'lint'], "agentgate policy: unknown subcommand 'lint' (expected check or explain) (see agentgate policy --help)\n"],
      [['policy', 'explain', '-f', PAYMENTS, '--kube', 'GET /version'], 'agentgate policy: missing --subject (see agentgate policy --help)\n'],
      [['policy', 'explain', '-f', PAYMENTS, '--subject', SA], 'agentgate policy: give exactly one of --kube "METHOD /path" or --sql "SQL" (see agentgate policy --help)\n'],
      [['policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--sql', 'select 1'], 'agentgate policy: --sql needs --connection NAME (see agentgate policy --help)\n'],
      [['policy', 'explain', '-f', PAYMENTS, '--subject', SA, '--kube', 'GET /version', '-H', 'nocolon'], "agentgate policy: --header must be \"Name: value\", got 'nocolon' (see agentgate policy --help)\n"],
      [['policy', 'check', '-f', PAYMENTS, '-o', 'yaml'], "agentgate policy: -o must be text or json, got 'yaml' (see agentgate policy --help)\n"],
    ];
    for (const [args, message] of cases) {
      it(args.slice(1).join(' '), () => {
        const r = agentgate(...args);
        expect(r.code).to.equal(2);
        expect(r.stderr).to.equal(message);
      });
    }
  });
});
