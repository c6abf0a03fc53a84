import { expect } from 'chai';
import { parsePolicy } from '../../../core/policy/load.js';

const HEAD = 'apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n';

function errors(text: string): string[] {
  return parsePolicy(text, 'p.yaml').errors.map((e) => `${e.file}:${e.line}:${e.col}: ${e.message}`);
}
function warnings(text: string): string[] {
  return parsePolicy(text, 'p.yaml').warnings.map((e) => `${e.line}:${e.col}: ${e.message}`);
}

describe('policy loading and validation', () => {
  it('loads the policy of the issue with its defaults', () => {
    const r = parsePolicy(
      `${HEAD}  masking: { pan: bin+last4, columns: [public.cards.cvv] }
  rules:
    - { name: read-cards, subjects: ["system:serviceaccount:payments:*"], postgres: { connections: [payments], statements: [select], tables: ["public.*"] }, action: allow }
`,
      'p.yaml',
    );
    expect(r.errors).to.deep.equal([]);
    expect(r.policy!.name).to.equal('p');
    expect(r.policy!.enforcement).to.equal('enforce');
    expect(r.policy!.defaultAction).to.equal('deny');
    expect(r.policy!.masking).to.deep.equal({ pan: 'bin+last4', fields: [], columns: ['public.cards.cvv'], secrets: 'mask' });
    expect(r.policy!.rules.map((x) => x.name)).to.deep.equal([
      'read-cards', 'builtin:dangerous-functions', 'builtin:procedural-code', 'builtin:discovery', 'builtin:impersonation',
    ]);
  });

  it('takes secrets: redact into the masking spec', () => {
    const r = parsePolicy(`${HEAD}  masking: { secrets: redact }\n  rules:\n    - { name: a, postgres: {}, action: allow }\n`, 'p.yaml');
    expect(r.policy!.masking.secrets).to.equal('redact');
  });

  it('reports wrong header values, missing keys, wrong types, unknown keys and empty rules with their places', () => {
    expect(errors('apiVersion: v1\nkind: Polic\nmetadata: {}\nspec:\n  rules: []\n  default: 1\n  extra: x\n')).to.deep.equal([
      "p.yaml:1:13: apiVersion: unknown value 'v1' (expected one of: agentgate.dev/v1)",
      "p.yaml:2:7: kind: unknown value 'Polic' (expected one of: Policy)",
      "p.yaml:3:11: metadata: missing required key 'name'",
      'p.yaml:5:10: spec.rules: must not be empty',
      'p.yaml:6:12: spec.default: expected a string, got a number',
      'p.yaml:7:3: spec.extra: unknown key (known keys: default, enforcement, masking, rules)',
    ]);
  });

  it('reports unknown statement kinds and verbs, and suggests the key meant', () => {
    expect(
      errors(`${HEAD}  rules:
    - name: read
      postgres: { statements: [select, upsert], tabels: ["public.*"] }
      action: allow
    - name: look
      kubernetes: { verbs: [get, fetch] }
      action: allow
`),
    ).to.deep.equal([
      "p.yaml:7:40: spec.rules[0].postgres.statements[1]: unknown value 'upsert' (expected one of: select, insert, update, delete, merge, copy-to, copy-from, truncate, drop, create, alter, grant, revoke, set, show, transaction, call, do, lock, listen, notify, other, delete-without-where, update-without-where)",
      "p.yaml:7:49: spec.rules[0].postgres.tabels: unknown key (did you mean 'tables'?)",
      "p.yaml:10:34: spec.rules[1].kubernetes.verbs[1]: unknown value 'fetch' (expected one of: get, list, watch, create, update, patch, delete, deletecollection, impersonate, proxy, head, options, post, put, *)",
    ]);
  });

  it('reports a missing rule name and action', () => {
    expect(errors(`${HEAD}  rules:\n    - { postgres: {} }\n`)).to.deep.equal([
      "p.yaml:6:7: spec.rules[0]: missing required key 'name'",
      "p.yaml:6:7: spec.rules[0]: missing required key 'action'",
    ]);
  });

  it('reports duplicate names, rules that match everything, and both protocol blocks in one rule', () => {
    expect(
      errors(`${HEAD}  rules:
    - { name: a, postgres: {}, action: allow }
    - { name: a, kubernetes: {}, postgres: {}, action: deny }
    - { name: b, action: deny }
`),
    ).to.deep.equal([
      'p.yaml:7:15: spec.rules[1] (a): duplicate rule name (first used by spec.rules[0])',
      'p.yaml:7:44: spec.rules[1] (a): a rule has either a kubernetes or a postgres block, not both (a request is one or the other, so it could never match)',
      'p.yaml:8:7: spec.rules[2] (b): the rule names nothing to match, so it would match every request; name subjects, groups, kubernetes or postgres (use spec.default for a catch-all)',
    ]);
  });

  it('reports bad globs, resources, URLs, tables and masking columns', () => {
    expect(
      errors(`${HEAD}  masking: { columns: [cards.cvv] }
  rules:
    - name: k
      subjects: ["a[b]"]
      kubernetes: { resources: ["pods/**", "a/b/c"], namespaces: [""] }
      action: deny
    - name: u
      kubernetes: { nonResourceURLs: [metrics] }
      action: allow
    - name: t
      postgres: { tables: ["a.b.c", "x y"] }
      action: deny
`),
    ).to.deep.equal([
      "p.yaml:5:24: spec.masking.columns[0]: 'cards.cvv' is not schema.table.column",
      "p.yaml:8:18: spec.rules[0] (k): subjects[0]: 'a[b]': '[' is not supported in patterns (only '*' is a wildcard)",
      "p.yaml:9:33: spec.rules[0] (k): kubernetes.resources[0]: 'pods/**': '**' is not supported ('*' already matches any characters, '/' included)",
      "p.yaml:9:44: spec.rules[0] (k): kubernetes.resources[1]: 'a/b/c' is not resource or resource/subresource",
      'p.yaml:9:67: spec.rules[0].kubernetes.namespaces[0]: must not be empty',
      "p.yaml:12:39: spec.rules[1] (u): kubernetes.nonResourceURLs[0]: 'metrics' must start with '/'",
      "p.yaml:15:28: spec.rules[2] (t): postgres.tables[0]: 'a.b.c' is not name or schema.name",
      "p.yaml:15:37: spec.rules[2] (t): postgres.tables[1]: 'x y': patterns must not contain whitespace",
    ]);
  });

  it('reports function patterns written with argument types, and accepts operators as operator(NAME)', () => {
    expect(
      errors(`${HEAD}  rules:
    - name: f
      postgres: { functions: ["billing.refund(int)", "operator(===)", "ext.operator(@@@)", "a.b.c"] }
      action: allow
`),
    ).to.deep.equal([
      "p.yaml:7:31: spec.rules[0] (f): postgres.functions[0]: 'billing.refund(int)' has parentheses: name a function without its argument types (the name covers every overload), an operator as operator(NAME)",
      "p.yaml:7:92: spec.rules[0] (f): postgres.functions[3]: 'a.b.c' is not name or schema.name",
    ]);
  });

  it('reports approval settings that do not apply', () => {
    expect(
      errors(`${HEAD}  rules:
    - { name: a, postgres: {}, action: allow, approval: { mode: wait } }
    - name: b
      postgres: {}
      action: approve
      approval: { mode: defer, waitSeconds: 10, windowMinutes: 5, minApprovals: 0 }
`),
    ).to.deep.equal([
      "p.yaml:6:57: spec.rules[0] (a): approval applies only to rules with action: approve (this one is 'allow')",
      'p.yaml:10:45: spec.rules[1] (b): approval.waitSeconds applies only to mode: wait (defer refuses at once)',
      'p.yaml:10:64: spec.rules[1] (b): approval.windowMinutes applies only to scope: window',
      'p.yaml:10:81: spec.rules[1].approval.minApprovals: must be at least 1, got 0',
    ]);
  });

  it('refuses builtin: names that are not built-ins', () => {
    expect(errors(`${HEAD}  rules:\n    - { name: "builtin:nope", postgres: {}, action: deny }\n`)).to.deep.equal([
      "p.yaml:6:15: spec.rules[0] (builtin:nope): no built-in rule is named 'builtin:nope' (built-ins: builtin:dangerous-functions, builtin:procedural-code, builtin:discovery, builtin:impersonation)",
    ]);
  });

  it('reports YAML syntax errors and empty files', () => {
    expect(errors('a: [\n')).to.deep.equal(['p.yaml:2:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]']);
    expect(errors('')).to.deep.equal(['p.yaml:1:1: no policy document in file (expected apiVersion: agentgate.dev/v1, kind: Policy)']);
  });

  it('refuses a second document in the file', () => {
    expect(errors(`${HEAD}  rules:\n    - { name: a, postgres: {}, action: allow }\n---\n${HEAD}  rules:\n    - { name: b, postgres: {}, action: allow }\n`)).to.deep.equal([
      'p.yaml:8:1: a policy file holds exactly one Policy document; merge the rules into one',
    ]);
  });

  describe('shadowed rules', () => {
    it('warns about an allow fully covered by a deny', () => {
      expect(
        warnings(`${HEAD}  rules:
    - { name: exec, kubernetes: { verbs: [create], resources: [pods/exec], namespaces: [a] }, action: allow }
    - { name: no-exec, kubernetes: { resources: ["pods/*"] }, action: deny }
`),
      ).to.deep.equal(["6:15: rule 'exec' (allow) can never take effect: rule 'no-exec' (deny) matches every request it matches and is more restrictive"]);
    });

    it('warns about an allow covered by a built-in guard and says how to replace it', () => {
      expect(warnings(`${HEAD}  rules:\n    - { name: do-it, postgres: { statements: [do] }, action: allow }\n`)).to.deep.equal([
        "6:15: rule 'do-it' (allow) can never take effect: rule 'builtin:procedural-code' (approve) matches every request it matches and is more restrictive; to change a built-in rule, define a rule named 'builtin:procedural-code' in its place",
      ]);
    });

    it('warns about an approve covered by a deny on an unqualified table name', () => {
      expect(
        warnings(`${HEAD}  rules:
    - { name: approve-cards, postgres: { tables: [public.cards] }, action: approve }
    - { name: deny-cards, postgres: { tables: [cards] }, action: deny }
`),
      ).to.deep.equal(["6:15: rule 'approve-cards' (approve) can never take effect: rule 'deny-cards' (deny) matches every request it matches and is more restrictive"]);
    });

    it('does not warn about an allow on tables, which still opens operations on no table', () => {
      expect(
        warnings(`${HEAD}  rules:
    - { name: allow-cards, postgres: { tables: [public.cards] }, action: allow }
    - { name: deny-cards, postgres: { tables: [cards] }, action: deny }
`),
      ).to.deep.equal([]);
    });

    it('warns about upper-case table patterns, which match only quoted identifiers', () => {
      expect(warnings(`${HEAD}  rules:\n    - { name: t, postgres: { tables: [public.Cards] }, action: deny }\n`)).to.deep.equal([
        "6:39: rule 't': postgres.tables[0] 'public.Cards' has upper-case letters; PostgreSQL folds unquoted names to lower case, so it matches only a quoted identifier of exactly that case",
      ]);
    });

    it('does not warn when the more restrictive rule is narrower', () => {
      expect(
        warnings(`${HEAD}  rules:
    - { name: reads, kubernetes: { verbs: [get, list] }, action: allow }
    - { name: no-secrets, kubernetes: { verbs: [get], resources: [secrets] }, action: deny }
`),
      ).to.deep.equal([]);
    });
  });
});
