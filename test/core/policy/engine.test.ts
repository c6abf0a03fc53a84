import { expect } from 'chai';
import { parsePolicy, builtinPolicy } from '../../../core/policy/load.js';
import type { CompiledPolicy } from '../../../core/policy/engine.js';
import { combineDecisions } from '../../../core/policy/engine.js';
import type { Identity } from '../../../core/identity.js';
import type { KubeRequest, PgRequest } from '../../../core/policy/types.js';
import { requestInfo } from '../../../core/kube/request-info.js';
import { registry } from '../../../core/metrics.js';

function policy(rules: string, spec = 'default: deny'): CompiledPolicy {
  const text = `apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: t }\nspec:\n  ${spec}\n  rules:\n${rules}`;
  const r = parsePolicy(text, 't.yaml');
  if (!r.policy) throw new Error(r.errors.map((e) => `${e.line}:${e.col}: ${e.message}`).join('\n'));
  return r.policy;
}

const agent: Identity = { subject: 'system:serviceaccount:payments:agent', groups: ['system:serviceaccounts', 'agents'], via: 'local-token' };
const other: Identity = { subject: 'alice@example.com', groups: ['people'], via: 'oidc' };

function pg(statement: PgRequest['statement'], tables: string[] = [], extra: Partial<PgRequest> = {}): PgRequest {
  return { protocol: 'postgres', connection: 'payments', statement, qualifiers: [], tables, functions: [], ...extra };
}
const kube = (method: string, path: string): KubeRequest => requestInfo(method, path);

describe('policy engine: decide', () => {
  describe('subjects and groups', () => {
    const p = policy(`    - { name: sa, subjects: ["system:serviceaccount:payments:*"], postgres: {}, action: allow }
    - { name: people, groups: [people], kubernetes: {}, action: allow }`);

    it('matches subjects by glob', () => {
      expect(p.decide(agent, pg('select')).rule).to.equal('sa');
      expect(p.decide(other, pg('select')).rule).to.equal('default');
    });

    it('matches when any group of the identity matches', () => {
      expect(p.decide(other, kube('GET', '/api/v1/namespaces/a/pods')).rule).to.equal('people');
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods')).rule).to.equal('default');
    });

    it('requires both subjects and groups when a rule names both', () => {
      const q = policy(`    - { name: both, subjects: ["alice@*"], groups: [admins], postgres: {}, action: allow }`);
      expect(q.decide(other, pg('select')).action).to.equal('deny');
      expect(q.decide({ ...other, groups: ['admins'] }, pg('select')).rule).to.equal('both');
    });
  });

  describe('protocol blocks', () => {
    it('never matches a kubernetes rule to a postgres request or the reverse', () => {
      const p = policy(`    - { name: k, kubernetes: {}, action: allow }`);
      expect(p.decide(agent, pg('select')).rule).to.equal('default');
      const q = policy(`    - { name: p, postgres: {}, action: allow }`);
      expect(q.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x')).rule).to.equal('default');
    });

    it('matches either protocol when a rule names only subjects', () => {
      const p = policy(`    - { name: any, subjects: ["system:serviceaccount:payments:agent"], action: allow }`);
      expect(p.decide(agent, pg('select')).rule).to.equal('any');
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x')).rule).to.equal('any');
    });
  });

  describe('kubernetes fields', () => {
    it('matches verbs, and * matches every verb', () => {
      const p = policy(`    - { name: read, kubernetes: { verbs: [get, list] }, action: allow }
    - { name: all, kubernetes: { verbs: ["*"] }, action: approve }`);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods')).matched).to.deep.equal(['read', 'all']);
      expect(p.decide(agent, kube('DELETE', '/api/v1/namespaces/a/pods/x')).matched).to.deep.equal(['all']);
    });

    it('matches apiGroups, with "" for the core group', () => {
      const p = policy(`    - { name: core, kubernetes: { apiGroups: [""] }, action: allow }
    - { name: apps, kubernetes: { apiGroups: ["apps"] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x')).rule).to.equal('core');
      expect(p.decide(agent, kube('GET', '/apis/apps/v1/namespaces/a/deployments/x')).rule).to.equal('apps');
      expect(p.decide(agent, kube('GET', '/apis/batch/v1/namespaces/a/jobs/x')).rule).to.equal('default');
    });

    it('matches resources like RBAC: pods is not pods/exec, pods/* is every pods subresource', () => {
      const p = policy(`    - { name: pods, kubernetes: { resources: [pods] }, action: allow }
    - { name: subs, kubernetes: { resources: ["pods/*"] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x')).matched).to.deep.equal(['pods']);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x/log')).matched).to.deep.equal(['subs']);
    });

    it('matches */scale to the scale subresource of every resource', () => {
      const p = policy(`    - { name: scale, kubernetes: { resources: ["*/scale"] }, action: allow }`);
      expect(p.decide(agent, kube('PUT', '/apis/apps/v1/namespaces/a/deployments/d/scale')).rule).to.equal('scale');
      expect(p.decide(agent, kube('PUT', '/apis/apps/v1/namespaces/a/deployments/d')).rule).to.equal('default');
    });

    it('matches pods/exec for exec arriving as a WebSocket GET', () => {
      const p = policy(`    - { name: exec, kubernetes: { verbs: [create], resources: [pods/exec] }, action: approve }`);
      const d = p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x/exec?command=sh&stdin=true'));
      expect(d.action).to.equal('approve');
      expect(d.rule).to.equal('exec');
    });

    it('matches namespaces by glob', () => {
      const p = policy(`    - { name: pay, kubernetes: { namespaces: ["pay*"] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/payments/pods')).rule).to.equal('pay');
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/shop/pods')).rule).to.equal('default');
    });

    it('treats the namespace object /namespaces/{name} as in that namespace', () => {
      const p = policy(`    - { name: pay, kubernetes: { namespaces: [payments] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/payments')).rule).to.equal('pay');
    });

    it('lets a deny naming a namespace match a list across all namespaces', () => {
      const p = policy(`    - { name: all, kubernetes: { resources: [secrets] }, action: allow }
    - { name: no-pay, kubernetes: { namespaces: [payments], resources: [secrets] }, action: deny }`);
      const d = p.decide(agent, kube('GET', '/api/v1/secrets'));
      expect(d.action).to.equal('deny');
      expect(d.rule).to.equal('no-pay');
    });

    it('opens a list across all namespaces to an allow only with namespaces ["*"]', () => {
      const p = policy(`    - { name: pay, kubernetes: { namespaces: [payments] }, action: allow }
    - { name: star, kubernetes: { namespaces: ["*"], resources: [configmaps] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/pods')).rule).to.equal('default');
      expect(p.decide(agent, kube('GET', '/api/v1/configmaps')).rule).to.equal('star');
    });

    it('never matches a rule naming namespaces to a cluster-scoped object', () => {
      const p = policy(`    - { name: star, kubernetes: { namespaces: ["*"] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/nodes/n1')).rule).to.equal('default');
    });

    it('matches names, and lets a deny naming a name match collections', () => {
      const p = policy(`    - { name: cm, kubernetes: { resources: [configmaps] }, action: allow }
    - { name: keep, kubernetes: { verbs: [delete, deletecollection], names: [payments-config] }, action: deny }`);
      expect(p.decide(agent, kube('DELETE', '/api/v1/namespaces/a/configmaps/payments-config')).rule).to.equal('keep');
      expect(p.decide(agent, kube('DELETE', '/api/v1/namespaces/a/configmaps')).rule).to.equal('keep');
      expect(p.decide(agent, kube('DELETE', '/api/v1/namespaces/a/configmaps/other')).rule).to.equal('cm');
    });

    it('opens a collection to an allow naming names only with names ["*"]', () => {
      const p = policy(`    - { name: one, kubernetes: { names: [x] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods/x')).rule).to.equal('one');
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods')).rule).to.equal('default');
    });

    it('matches nonResourceURLs only to non-resource requests', () => {
      const p = policy(`    - { name: metrics, kubernetes: { nonResourceURLs: ["/metrics", "/openapi/*"] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/metrics')).rule).to.equal('metrics');
      expect(p.decide(agent, kube('GET', '/openapi/v3/apis/apps/v1')).rule).to.equal('metrics');
      expect(p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods')).rule).to.equal('default');
    });

    it('does not match resource fields to non-resource requests', () => {
      const p = policy(`    - { name: res, kubernetes: { resources: ["*"] }, action: allow }`);
      expect(p.decide(agent, kube('GET', '/metrics')).rule).to.equal('default');
    });
  });

  describe('postgres fields', () => {
    it('matches connections by glob', () => {
      const p = policy(`    - { name: pay, postgres: { connections: ["pay*"] }, action: allow }`);
      expect(p.decide(agent, pg('select')).rule).to.equal('pay');
      expect(p.decide(agent, { ...pg('select'), connection: 'shop' }).rule).to.equal('default');
    });

    it('matches statement kinds and qualifiers', () => {
      const p = policy(`    - { name: reads, postgres: { statements: [select] }, action: allow }
    - { name: all-rows, postgres: { statements: [delete-without-where] }, action: deny }`);
      expect(p.decide(agent, pg('select')).rule).to.equal('reads');
      expect(p.decide(agent, pg('delete', ['public.t'], { qualifiers: ['delete-without-where'] })).rule).to.equal('all-rows');
      expect(p.decide(agent, pg('delete', ['public.t'])).rule).to.equal('default');
    });

    it('allows only when every table of the operation is covered', () => {
      const p = policy(`    - { name: pub, postgres: { tables: ["public.*"] }, action: allow }`);
      expect(p.decide(agent, pg('select', ['public.a', 'public.b'])).rule).to.equal('pub');
      expect(p.decide(agent, pg('select', ['public.a', 'vault.keys'])).rule).to.equal('default');
    });

    it('denies when any table of the operation matches, even where an allow covers them all', () => {
      const p = policy(`    - { name: pub, postgres: { tables: ["public.*"] }, action: allow }
    - { name: cards, postgres: { tables: [public.cards] }, action: deny }`);
      const d = p.decide(agent, pg('select', ['public.orders', 'public.cards']));
      expect(d.rule).to.equal('cards');
      expect(d.matched).to.deep.equal(['pub', 'cards']);
    });

    it('covers an operation on no table with an allow naming tables', () => {
      const p = policy(`    - { name: pub, postgres: { tables: ["public.*"] }, action: allow }`);
      expect(p.decide(agent, pg('select')).rule).to.equal('pub');
    });

    it('matches an unqualified pattern to that name in any schema', () => {
      const p = policy(`    - { name: cards, postgres: { tables: [cards] }, action: deny }`);
      expect(p.decide(agent, pg('select', ['billing.cards'])).rule).to.equal('cards');
    });

    it('resolves an unqualified request name as public.<name> for an allow, and in any schema for a deny', () => {
      const p = policy(`    - { name: pub, postgres: { tables: ["public.*"] }, action: allow }
    - { name: vault, postgres: { tables: ["vault.keys"] }, action: approve }`);
      expect(p.decide(agent, pg('select', ['orders'])).rule).to.equal('pub');
      expect(p.decide(agent, pg('select', ['keys'])).rule).to.equal('vault');
    });

    it('matches functions, ignoring a catalog prefix', () => {
      const p = policy(`    - { name: fn, postgres: { functions: [secret_fn] }, action: deny }`);
      expect(p.decide(agent, pg('select', [], { functions: ['now', 'mydb.public.secret_fn'] })).rule).to.equal('fn');
    });
  });

  describe('most restrictive wins', () => {
    const p = policy(`    - { name: allow-all, postgres: {}, action: allow }
    - { name: approve-writes, postgres: { statements: [update] }, action: approve }
    - { name: deny-drop, postgres: { statements: [drop, update] }, action: deny }`);

    it('prefers deny over approve over allow, whatever the order', () => {
      const d = p.decide(agent, pg('update', ['public.t']));
      expect(d.action).to.equal('deny');
      expect(d.rule).to.equal('deny-drop');
      expect(d.matched).to.deep.equal(['allow-all', 'approve-writes', 'deny-drop']);
    });

    it('returns the allow when only the allow matches', () => {
      const d = p.decide(agent, pg('select'));
      expect(d).to.deep.equal({ action: 'allow', rule: 'allow-all', reason: "allowed by rule 'allow-all' of policy 't'", enforced: true, matched: ['allow-all'] });
    });

    it('keeps the first rule in policy order among equally restrictive ones', () => {
      const q = policy(`    - { name: first, postgres: {}, action: deny }
    - { name: second, postgres: {}, action: deny }`);
      expect(q.decide(agent, pg('select')).rule).to.equal('first');
    });
  });

  describe('default', () => {
    it('denies with a reason saying how to get access when no rule matches', () => {
      const p = policy(`    - { name: x, postgres: { statements: [select] }, action: allow }`);
      const d = p.decide(agent, pg('insert', ['public.t']));
      expect(d).to.deep.equal({
        action: 'deny',
        rule: 'default',
        reason:
          "denied by spec.default of policy 't': no rule allows system:serviceaccount:payments:agent to insert on connection 'payments', tables public.t; to get access, ask the owners of policy 't' to add a rule that allows it",
        enforced: true,
        matched: [],
      });
    });

    it('allows when spec.default is allow', () => {
      const p = policy(`    - { name: x, postgres: { statements: [drop] }, action: deny }`, 'default: allow');
      expect(p.decide(agent, pg('insert')).action).to.equal('allow');
      expect(p.decide(agent, pg('insert')).rule).to.equal('default');
    });
  });

  describe('observe mode', () => {
    const p = policy(`    - { name: no-drop, postgres: { statements: [drop] }, action: deny }`, 'enforcement: observe');

    it('records the would-be deny with enforced false', () => {
      const d = p.decide(agent, pg('drop', ['public.t']));
      expect(d.action).to.equal('deny');
      expect(d.rule).to.equal('no-drop');
      expect(d.enforced).to.equal(false);
      expect(d.reason).to.match(/^observe mode, not enforced: denied by rule 'no-drop'/);
    });

    it('marks the default decision as not enforced too', () => {
      expect(p.decide(agent, pg('select')).enforced).to.equal(false);
    });
  });

  describe('approval', () => {
    it('fills the approval defaults: wait, once, 120 s, one approval', () => {
      const p = policy(`    - { name: ask, postgres: { statements: [update] }, action: approve }`);
      expect(p.decide(agent, pg('update', ['public.t'])).approval).to.deep.equal({
        mode: 'wait', scope: 'once', waitSeconds: 120, windowMinutes: 0, approverGroups: [], minApprovals: 1,
      });
    });

    it('takes mode, scope, window, approver groups and threshold from the rule', () => {
      const p = policy(`    - name: ask
      postgres: { statements: [update] }
      action: approve
      approval: { mode: defer, scope: window, windowMinutes: 30, approverGroups: [sre], minApprovals: 2 }`);
      const d = p.decide(agent, pg('update', ['public.t']));
      expect(d.approval).to.deep.equal({ mode: 'defer', scope: 'window', waitSeconds: 120, windowMinutes: 30, approverGroups: ['sre'], minApprovals: 2 });
      expect(d.reason).to.equal(
        "rule 'ask' of policy 't' requires a human approval from 2 approvers in sre for system:serviceaccount:payments:agent to update on connection 'payments', tables public.t",
      );
    });

    it('defaults a window scope to 15 minutes', () => {
      const p = policy(`    - { name: ask, postgres: {}, action: approve, approval: { scope: window } }`);
      expect(p.decide(agent, pg('select')).approval?.windowMinutes).to.equal(15);
    });

    it('carries no approval on allow or deny', () => {
      const p = policy(`    - { name: ok, postgres: {}, action: allow }`);
      expect(p.decide(agent, pg('select'))).to.not.have.property('approval');
    });
  });

  describe('functions an allow rule must name', () => {
    const p = policy(`    - { name: reads, postgres: { statements: [select], tables: ["public.*"] }, action: allow }
    - { name: sequences, postgres: { statements: [insert], functions: [nextval, pg_catalog.setval] }, action: allow }
    - { name: billing, postgres: { statements: [select], functions: ["billing.*", "public.crosstab"] }, action: allow }
    - { name: no-purge, postgres: { functions: [purge] }, action: deny }`);
    // What core/sql reports: functions as written, unlisted/exactOnly resolved.
    const call = (statement: PgRequest['statement'], functions: string[], unlisted: string[], exactOnly: string[] = []) =>
      pg(statement, [], { functions, unlisted, exactOnly });

    it('opens an operation that calls only read-only built-ins without naming them', () => {
      expect(p.decide(agent, call('select', ['lower', 'now'], [])).rule).to.equal('reads');
    });

    it('does not open an operation calling a function the rule does not name', () => {
      const d = p.decide(agent, call('select', ['setval'], ['pg_catalog.setval']));
      expect(d.action).to.equal('deny');
      expect(d.rule).to.equal('default');
      expect(d.reason).to.include('an allow rule must name pg_catalog.setval in postgres.functions');
    });

    it('opens it when the rule names every such function, bare or schema-qualified', () => {
      expect(p.decide(agent, call('insert', ['nextval', 'setval'], ['pg_catalog.nextval', 'pg_catalog.setval'])).rule).to.equal('sequences');
      expect(p.decide(agent, call('insert', ['nextval', 'lo_unlink'], ['pg_catalog.nextval', 'pg_catalog.lo_unlink'])).action).to.equal('deny');
    });

    it('opens a user-defined function by a schema pattern', () => {
      expect(p.decide(agent, call('select', ['billing.refund'], ['billing.refund'])).rule).to.equal('billing');
      expect(p.decide(agent, call('select', ['refund'], ['public.refund'])).action).to.equal('deny');
    });

    it('opens SQL-running and settings functions only by a name without *', () => {
      expect(p.decide(agent, call('select', ['crosstab'], ['public.crosstab'], ['public.crosstab'])).rule).to.equal('billing');
      expect(p.decide(agent, call('select', ['billing.connectby'], ['billing.connectby'], ['billing.connectby'])).action).to.equal('deny');
      const star = policy(`    - { name: all, postgres: { functions: ["*"] }, action: allow }`);
      expect(star.decide(agent, call('select', ['purge'], ['public.purge'])).rule).to.equal('all');
      expect(star.decide(agent, call('select', ['set_config'], ['pg_catalog.set_config'], ['pg_catalog.set_config'])).action).to.equal('deny');
      expect(star.decide(agent, call('select', ['ts_rewrite'], ['pg_catalog.ts_rewrite'], ['pg_catalog.ts_rewrite'])).action).to.equal('deny');
    });

    it('requires the names of a rule with no postgres block too', () => {
      const q = policy(`    - { name: dba, subjects: ["system:serviceaccount:payments:agent"], action: allow }`);
      expect(q.decide(agent, call('select', ['lower'], [])).rule).to.equal('dba');
      expect(q.decide(agent, call('select', ['purge'], ['public.purge'])).action).to.equal('deny');
    });

    it('counts every function when a request carries no classes (not built by core/sql)', () => {
      expect(p.decide(agent, pg('select', [], { functions: ['lower'] })).action).to.equal('deny');
      expect(p.decide(agent, pg('insert', [], { functions: ['nextval'] })).rule).to.equal('sequences');
    });

    it('matches deny rules on any function called, named or not', () => {
      expect(p.decide(agent, call('select', ['purge'], ['public.purge'])).rule).to.equal('no-purge');
    });
  });

  describe('built-in rules', () => {
    const p = policy(`    - { name: everything, postgres: {}, action: allow }
    - { name: kube, kubernetes: { resources: ["*"] }, action: allow }`);

    it('denies dangerous functions even where a rule allows the statement and names them', () => {
      const q = policy(`    - { name: everything, postgres: { functions: ["*", pg_catalog.pg_read_file] }, action: allow }`);
      const d = q.decide(agent, pg('select', [], { functions: ['pg_catalog.pg_read_file'] }));
      expect(d.action).to.equal('deny');
      expect(d.rule).to.equal('builtin:dangerous-functions');
      expect(d.matched).to.deep.equal(['everything', 'builtin:dangerous-functions']);
    });

    it('denies dblink* and COPY … PROGRAM (the copy-program pseudo-function)', () => {
      expect(p.decide(agent, pg('select', [], { functions: ['dblink_exec'] })).rule).to.equal('builtin:dangerous-functions');
      expect(p.decide(agent, pg('copy-to', ['public.t'], { functions: ['copy-program'] })).rule).to.equal('builtin:dangerous-functions');
    });

    it('requires approval for do, call and other', () => {
      for (const k of ['do', 'call', 'other'] as const) {
        const d = p.decide(agent, pg(k));
        expect(d.action, k).to.equal('approve');
        expect(d.rule, k).to.equal('builtin:procedural-code');
      }
    });

    it('allows discovery by a fallback that any matching rule overrides', () => {
      expect(p.decide(agent, kube('GET', '/apis/apps/v1')).rule).to.equal('builtin:discovery');
      const q = policy(`    - { name: no-version, kubernetes: { nonResourceURLs: [/version] }, action: deny }`);
      expect(q.decide(agent, kube('GET', '/version')).rule).to.equal('no-version');
    });

    it('denies impersonation under default allow unless a rule allows it', () => {
      const imp: KubeRequest = { ...kube('GET', '/api/v1/namespaces/a/pods/x'), verb: 'impersonate', resource: 'users', name: 'bob', namespace: '' };
      const open = policy(`    - { name: x, postgres: { statements: [drop] }, action: deny }`, 'default: allow');
      expect(open.decide(agent, imp).rule).to.equal('builtin:impersonation');
      const allowed = policy(`    - { name: imp, kubernetes: { verbs: [impersonate], resources: [users] }, action: allow }`, 'default: allow');
      expect(allowed.decide(agent, imp).rule).to.equal('imp');
    });

    it('is replaced by a policy rule of the same name', () => {
      const q = policy(`    - { name: "builtin:procedural-code", subjects: [dba], postgres: { statements: [do] }, action: allow }`);
      expect(q.decide({ ...agent, subject: 'dba' }, pg('do')).rule).to.equal('builtin:procedural-code');
      expect(q.decide({ ...agent, subject: 'dba' }, pg('do')).action).to.equal('allow');
      expect(q.decide(agent, pg('do')).rule).to.equal('default');
    });
  });

  describe('the embedded default policy', () => {
    const p = builtinPolicy();

    it('allows discovery and denies everything else by default', () => {
      expect(p.decide(agent, kube('GET', '/version')).rule).to.equal('builtin:discovery');
      const d = p.decide(agent, kube('GET', '/api/v1/namespaces/a/pods'));
      expect(d.action).to.equal('deny');
      expect(d.rule).to.equal('default');
    });

    it('requires approval for DO and denies pg_read_file', () => {
      expect(p.decide(agent, pg('do')).action).to.equal('approve');
      expect(p.decide(agent, pg('select', [], { functions: ['pg_read_file'] })).rule).to.equal('builtin:dangerous-functions');
    });
  });

  describe('identity memo', () => {
    it('decides again from scratch when an identity object changes in place', () => {
      const p = policy(`    - { name: sa, subjects: ["system:serviceaccount:payments:*"], postgres: {}, action: allow }
    - { name: ops, groups: [ops], postgres: {}, action: deny }`);
      const id: Identity = { subject: 'system:serviceaccount:payments:agent', groups: [], via: 'local-token' };
      expect(p.decide(id, pg('select')).rule).to.equal('sa');
      id.subject = 'system:serviceaccount:shop:agent';
      expect(p.decide(id, pg('select')).rule).to.equal('default');
      id.groups.push('ops');
      expect(p.decide(id, pg('select')).rule).to.equal('ops');
    });

    it('gives equal identities in different objects the same decision', () => {
      const p = policy(`    - { name: sa, subjects: ["system:serviceaccount:payments:*"], postgres: {}, action: allow }`);
      expect(p.decide({ ...agent }, pg('select')).rule).to.equal('sa');
      expect(p.decide({ ...agent, groups: [...agent.groups] }, pg('select')).rule).to.equal('sa');
    });
  });

  describe('combineDecisions', () => {
    it('keeps the most restrictive decision of several operations', () => {
      const p = policy(`    - { name: reads, postgres: { statements: [select] }, action: allow }`);
      const d = combineDecisions([p.decide(agent, pg('select')), p.decide(agent, pg('drop')), p.decide(agent, pg('do'))]);
      expect(d.rule).to.equal('default');
      expect(d.action).to.equal('deny');
    });
  });

  describe('metrics', () => {
    async function decisions(labels: Record<string, string>): Promise<number> {
      const m = registry.getSingleMetric('agentgate_policy_decisions_total');
      const v = (await m!.get()).values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
      return v?.value ?? 0;
    }

    it('counts decisions by action, protocol and enforced', async () => {
      const p = policy(`    - { name: no-drop, postgres: { statements: [drop] }, action: deny }`);
      const before = await decisions({ action: 'deny', protocol: 'postgres', enforced: 'true' });
      p.decide(agent, pg('drop'));
      p.decide(agent, pg('select'));
      expect(await decisions({ action: 'deny', protocol: 'postgres', enforced: 'true' })).to.equal(before + 2);
    });

    it('counts observe-mode decisions as not enforced', async () => {
      const p = policy(`    - { name: k, kubernetes: {}, action: approve }`, 'enforcement: observe');
      const before = await decisions({ action: 'approve', protocol: 'kubernetes', enforced: 'false' });
      p.decide(agent, kube('GET', '/api/v1/pods'));
      expect(await decisions({ action: 'approve', protocol: 'kubernetes', enforced: 'false' })).to.equal(before + 1);
    });

    it('exposes the counters in the Prometheus text format', async () => {
      const text = await registry.metrics();
      expect(text).to.match(/^agentgate_policy_decisions_total\{action="deny",protocol="postgres",enforced="true"\} \d+$/m);
      expect(text).to.contain('# TYPE agentgate_policy_reloads_total counter');
    });
  });
});
