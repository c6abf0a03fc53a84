// The decision: every matching rule is collected; among the policy's rules and the
// built-in guards the most restrictive action wins (deny > approve > allow, first in
// policy order on a tie); built-in fallbacks apply only when nothing else matched;
// then spec.default. Observe mode records the same decision with `enforced: false`.

import type { Identity } from '../identity.js';
import { ACTION_RANK } from './types.js';
import type { Action, Decision, MaskingSpec, Policy, PolicyRequest } from './types.js';
import type { CompiledRule } from './rules.js';
import { countDecision } from './metrics.js';

interface Candidates {
  subject: string;
  groupList: readonly string[];
  kubernetes: readonly CompiledRule[];
  postgres: readonly CompiledRule[];
}

export const DEFAULT_MASKING: MaskingSpec = { pan: 'last4', fields: [], columns: [], secrets: 'mask' };

export interface PolicyOptions {
  name: string;
  defaultAction: 'allow' | 'deny';
  enforcement: 'enforce' | 'observe';
  masking: MaskingSpec;
  /** Policy rules then built-ins, in the order `matched` reports them. */
  rules: CompiledRule[];
}

export class CompiledPolicy implements Policy {
  readonly name: string;
  readonly masking: MaskingSpec;
  readonly enforcement: 'enforce' | 'observe';
  readonly defaultAction: 'allow' | 'deny';
  readonly rules: readonly CompiledRule[];
  private readonly enforced: boolean;

  constructor(o: PolicyOptions) {
    this.name = o.name;
    this.masking = o.masking;
    this.enforcement = o.enforcement;
    this.defaultAction = o.defaultAction;
    this.rules = o.rules;
    this.enforced = o.enforcement === 'enforce';
  }

  // The rules whose protocol and identity conditions hold, per identity: a sidecar
  // serves one or two identities, so a policy of many teams' rules shrinks to a few.
  // Keyed by the identity object (proxies keep one per connection), then by its contents.
  private readonly byIdentity = new WeakMap<Identity, Candidates>();
  private readonly byKey = new Map<string, Candidates>();

  private candidates(identity: Identity, protocol: PolicyRequest['protocol']): readonly CompiledRule[] {
    let c = this.byIdentity.get(identity);
    // Re-checked on every call: an identity object changed in place must not keep its old rules.
    if (c === undefined || c.subject !== identity.subject || !sameList(c.groupList, identity.groups)) {
      // JSON keeps the key unambiguous whatever characters a token's subject or groups hold.
      const key = JSON.stringify([identity.subject, identity.groups]);
      c = this.byKey.get(key);
      if (c === undefined) {
        const mine = this.rules.filter((r) => r.matchesIdentity(identity));
        c = {
          subject: identity.subject,
          groupList: [...identity.groups],
          kubernetes: mine.filter((r) => r.protocol !== 'postgres'),
          postgres: mine.filter((r) => r.protocol !== 'kubernetes'),
        };
        if (this.byKey.size >= 1000) this.byKey.clear();
        this.byKey.set(key, c);
      }
      this.byIdentity.set(identity, c);
    }
    return protocol === 'postgres' ? c.postgres : c.kubernetes;
  }

  private readonly allowReasons = new Map<string, string>();
  private allowReason(rule: CompiledRule): string {
    let r = this.allowReasons.get(rule.name);
    if (r === undefined) {
      r = `allowed by rule '${rule.name}' of policy '${this.name}'`;
      this.allowReasons.set(rule.name, r);
    }
    return r;
  }

  decide(identity: Identity, request: PolicyRequest): Decision {
    const matched: string[] = [];
    let winner: CompiledRule | undefined;
    let fallback: CompiledRule | undefined;
    const rules = this.candidates(identity, request.protocol);
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      if (!r.matchesRequest(request)) continue;
      matched.push(r.name);
      if (r.tier === 'fallback') {
        if (fallback === undefined || ACTION_RANK[r.action] > ACTION_RANK[fallback.action]) fallback = r;
      } else if (winner === undefined || ACTION_RANK[r.action] > ACTION_RANK[winner.action]) {
        winner = r;
      }
    }
    winner ??= fallback;
    const action: Action = winner ? winner.action : this.defaultAction;
    // An allow by rule does not depend on the request: its reason is built once.
    let reason = action === 'allow' && winner ? this.allowReason(winner) : explainReason(this.name, action, winner, identity, request);
    if (!this.enforced && action !== 'allow') reason = `observe mode, not enforced: ${reason}`;
    const decision: Decision = { action, rule: winner ? winner.name : 'default', reason, enforced: this.enforced, matched };
    if (winner?.approval) decision.approval = winner.approval;
    countDecision(action, request.protocol, this.enforced);
    return decision;
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A policy that denies everything: what proxies get while no valid policy was ever loaded. */
export class FailClosedPolicy implements Policy {
  readonly name = 'policy-not-loaded';
  // The strictest masking: nothing of a Secret leaves while we know nothing.
  readonly masking: MaskingSpec = { ...DEFAULT_MASKING, secrets: 'redact' };
  readonly enforcement = 'enforce' as const;

  constructor(private readonly why: string) {}

  decide(_identity: Identity, request: PolicyRequest): Decision {
    countDecision('deny', request.protocol, true);
    return {
      action: 'deny',
      rule: 'policy-not-loaded',
      reason: `denied because the policy failed to load (${this.why}); every request is denied until a valid policy is in place: fix the policy file (check it with \`agentgate policy check -f FILE\`)`,
      enforced: true,
      matched: [],
    };
  }
}

/**
 * Several operations of one message (a multi-statement query, data-modifying CTEs):
 * the most restrictive decision stands for all of them.
 */
export function combineDecisions(decisions: Decision[]): Decision {
  if (decisions.length === 0) throw new Error('combineDecisions needs at least one decision');
  let worst = decisions[0];
  for (const d of decisions) {
    // An enforced refusal outranks an observed one of the same action.
    if (ACTION_RANK[d.action] > ACTION_RANK[worst.action] || (d.action === worst.action && d.enforced && !worst.enforced)) worst = d;
  }
  return worst;
}

export function describeRequest(request: PolicyRequest): string {
  if (request.protocol === 'postgres') {
    const parts = [`${request.statement}${request.qualifiers.length ? ` (${request.qualifiers.join(', ')})` : ''} on connection '${request.connection}'`];
    if (request.tables.length) parts.push(`tables ${request.tables.join(', ')}`);
    if (request.functions.length) parts.push(`functions ${request.functions.join(', ')}`);
    return parts.join(', ');
  }
  if (request.nonResource) return `${request.verb} ${request.path}`;
  const res = `${request.resource}${request.subresource ? `/${request.subresource}` : ''}${request.apiGroup ? `.${request.apiGroup}` : ''}`;
  let s = `${request.verb} ${res}`;
  if (request.name) s += ` '${request.name}'`;
  if (request.namespace) s += ` in namespace '${request.namespace}'`;
  else if (!request.name) s += ' in all namespaces';
  return s;
}

/** Why an allow rule for the statement may not have matched: functions it would have had to name. */
function unnamedFunctions(request: PolicyRequest): string {
  if (request.protocol !== 'postgres') return '';
  const need = request.unlisted ?? request.functions;
  if (need.length === 0) return '';
  return ` (an allow rule must name ${need.join(', ')} in postgres.functions: the proxy does not know ${need.length === 1 ? 'it as a read-only PostgreSQL built-in' : 'them as read-only PostgreSQL built-ins'}; \`agentgate policy explain --sql\` shows why)`;
}

function explainReason(policy: string, action: Action, rule: CompiledRule | undefined, identity: Identity, request: PolicyRequest): string {
  const what = `${identity.subject} to ${describeRequest(request)}`;
  const why = rule?.description ? ` (${rule.description})` : '';
  if (!rule) {
    return action === 'allow'
      ? `allowed by spec.default of policy '${policy}': no rule matched ${what}`
      : `denied by spec.default of policy '${policy}': no rule allows ${what}${unnamedFunctions(request)}; to get access, ask the owners of policy '${policy}' to add a rule that allows it`;
  }
  switch (action) {
    case 'allow':
      return `allowed by rule '${rule.name}' of policy '${policy}'`;
    case 'deny': {
      const change = rule.tier === 'user' ? 'to change that rule' : `to define a rule named '${rule.name}' in place of the built-in one`;
      return `denied by rule '${rule.name}' of policy '${policy}'${why}: it does not allow ${what}; to get access, ask the owners of policy '${policy}' ${change} (\`agentgate policy explain\` shows every rule that matched)`;
    }
    case 'approve': {
      const a = rule.approval;
      const who = a && a.approverGroups.length ? ` from ${a.minApprovals > 1 ? `${a.minApprovals} approvers` : 'an approver'} in ${a.approverGroups.join(' or ')}` : '';
      return `rule '${rule.name}' of policy '${policy}' requires a human approval${who} for ${what}${why}`;
    }
  }
}
