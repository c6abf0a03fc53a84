import { expect } from 'chai';
import fc from 'fast-check';
import { parsePolicy } from '../../../core/policy/load.js';
import { findShadowed } from '../../../core/policy/shadow.js';
import type { Identity } from '../../../core/identity.js';
import type { PgRequest, KubeRequest, PolicyRequest } from '../../../core/policy/types.js';
import { ACTION_RANK } from '../../../core/policy/types.js';
import { requestInfo } from '../../../core/kube/request-info.js';

// Small vocabularies so that generated rules and requests actually meet.
const subjects = ['agent-a', 'agent-b', 'system:serviceaccount:pay:x'];
const subjectPatterns = ['agent-*', 'agent-a', 'system:serviceaccount:pay:*', '*'];
const tables = ['public.cards', 'public.orders', 'vault.keys', 'orders'];
const tablePatterns = ['public.*', 'public.cards', 'vault.*', 'orders', '*', '*.keys'];
const kinds = ['select', 'update', 'delete', 'drop'] as const;
const paths = ['/api/v1/namespaces/pay/secrets/k', '/api/v1/secrets', '/api/v1/namespaces/pay/pods', '/apis/apps/v1/namespaces/shop/deployments/d', '/api/v1/nodes/n'];
const methods = ['GET', 'DELETE', 'POST'];

const action = fc.constantFrom('allow', 'deny', 'approve');
const pgRule = fc.record({
  subjects: fc.option(fc.subarray(subjectPatterns, { minLength: 1 }), { nil: undefined }),
  statements: fc.option(fc.subarray([...kinds], { minLength: 1 }), { nil: undefined }),
  tables: fc.option(fc.subarray(tablePatterns, { minLength: 1 }), { nil: undefined }),
  action,
});
const kubeRule = fc.record({
  subjects: fc.option(fc.subarray(subjectPatterns, { minLength: 1 }), { nil: undefined }),
  verbs: fc.option(fc.subarray(['get', 'list', 'delete', 'deletecollection', 'create'], { minLength: 1 }), { nil: undefined }),
  resources: fc.option(fc.subarray(['secrets', 'pods', 'deployments', 'nodes', '*'], { minLength: 1 }), { nil: undefined }),
  namespaces: fc.option(fc.subarray(['pay', 'shop', '*'], { minLength: 1 }), { nil: undefined }),
  action,
});
type PgRuleGen = { subjects?: string[]; statements?: string[]; tables?: string[]; action: string };
type KubeRuleGen = { subjects?: string[]; verbs?: string[]; resources?: string[]; namespaces?: string[]; action: string };

function yamlRule(name: string, r: PgRuleGen | KubeRuleGen): string {
  const fields: string[] = [`name: ${name}`, `action: ${r.action}`];
  if (r.subjects) fields.push(`subjects: ${JSON.stringify(r.subjects)}`);
  if ('verbs' in r || 'resources' in r || 'namespaces' in r) {
    const k = r as KubeRuleGen;
    const block: string[] = [];
    if (k.verbs) block.push(`verbs: ${JSON.stringify(k.verbs)}`);
    if (k.resources) block.push(`resources: ${JSON.stringify(k.resources)}`);
    if (k.namespaces) block.push(`namespaces: ${JSON.stringify(k.namespaces)}`);
    fields.push(`kubernetes: { ${block.join(', ')} }`);
  } else {
    const p = r as PgRuleGen;
    const block: string[] = [];
    if (p.statements) block.push(`statements: ${JSON.stringify(p.statements)}`);
    if (p.tables) block.push(`tables: ${JSON.stringify(p.tables)}`);
    fields.push(`postgres: { ${block.join(', ')} }`);
  }
  return `    - { ${fields.join(', ')} }`;
}

function compile(rules: (PgRuleGen | KubeRuleGen)[]) {
  const text = `apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: prop }\nspec:\n  rules:\n${rules.map((r, i) => yamlRule(`r${i}`, r)).join('\n')}\n`;
  const res = parsePolicy(text, 'prop.yaml');
  if (!res.policy) throw new Error(res.errors.map((e) => e.message).join('; '));
  return res.policy;
}

const request: fc.Arbitrary<PolicyRequest> = fc.oneof(
  fc.record({
    statement: fc.constantFrom(...kinds),
    tables: fc.subarray(tables),
  }).map(({ statement, tables }): PgRequest => ({ protocol: 'postgres', connection: 'c', statement, qualifiers: [], tables, functions: [] })),
  fc.record({ method: fc.constantFrom(...methods), path: fc.constantFrom(...paths) }).map(({ method, path }): KubeRequest => requestInfo(method, path)),
);
const identity: fc.Arbitrary<Identity> = fc.constantFrom(...subjects).map((subject) => ({ subject, groups: [], via: 'trust' }));
const anyRule = fc.oneof(pgRule, kubeRule);

describe('policy engine properties', () => {
  it('an added rule never makes a decision less restrictive', () => {
    fc.assert(
      fc.property(fc.array(anyRule, { minLength: 1, maxLength: 6 }), anyRule, identity, request, (rules, extra, id, req) => {
        const before = compile(rules).decide(id, req);
        const after = compile([...rules, extra]).decide(id, req);
        // Only the default can be overridden, and only by a matching rule.
        if (before.rule !== 'default') expect(ACTION_RANK[after.action]).to.be.at.least(ACTION_RANK[before.action]);
      }),
      { numRuns: 300 },
    );
  });

  it('an added allow never opens what a matching deny closes', () => {
    fc.assert(
      fc.property(fc.array(anyRule, { minLength: 1, maxLength: 6 }), anyRule, identity, request, (rules, extra, id, req) => {
        const before = compile(rules).decide(id, req);
        fc.pre(before.action === 'deny' && before.rule !== 'default');
        const after = compile([...rules, { ...extra, action: 'allow' }]).decide(id, req);
        expect(after.action).to.equal('deny');
      }),
      { numRuns: 300 },
    );
  });

  it('an allow rule on tables matches an operation only if it matches each of its tables alone', () => {
    fc.assert(
      fc.property(pgRule, identity, fc.constantFrom(...kinds), fc.subarray(tables, { minLength: 2 }), (rule, id, statement, ts) => {
        const p = compile([{ ...rule, action: 'allow' }]);
        const one = (t: string[]) => p.decide(id, { protocol: 'postgres', connection: 'c', statement, qualifiers: [], tables: t, functions: [] }).rule === 'r0';
        expect(one(ts)).to.equal(ts.every((t) => one([t])));
      }),
      { numRuns: 300 },
    );
  });

  it('a deny rule on tables matches an operation if it matches any of its tables alone', () => {
    fc.assert(
      fc.property(pgRule, identity, fc.constantFrom(...kinds), fc.subarray(tables, { minLength: 2 }), (rule, id, statement, ts) => {
        const p = compile([{ ...rule, action: 'deny' }]);
        const one = (t: string[]) => p.decide(id, { protocol: 'postgres', connection: 'c', statement, qualifiers: [], tables: t, functions: [] }).rule === 'r0';
        expect(one(ts)).to.equal(ts.some((t) => one([t])));
      }),
      { numRuns: 300 },
    );
  });

  it('warns about a shadowed rule only when the shadowing rule matches every request it matches', () => {
    fc.assert(
      fc.property(fc.array(anyRule, { minLength: 2, maxLength: 6 }), fc.array(fc.tuple(identity, request), { minLength: 20, maxLength: 20 }), (rules, samples) => {
        const p = compile(rules);
        for (const w of findShadowed(p.rules)) {
          const r = p.rules.find((x) => x.name === w.name)!;
          const by = p.rules.find((x) => x.name === w.by)!;
          for (const [id, req] of samples) if (r.matches(id, req)) expect(by.matches(id, req), `${w.message} on ${JSON.stringify(req)}`).to.equal(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
