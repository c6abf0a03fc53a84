// Human and JSON renderings of a decision, for `agentgate policy explain`.

import type { Decision, PolicyRequest } from './types.js';
import type { CompiledPolicy } from './engine.js';
import { describeRequest } from './engine.js';
import type { Identity } from '../identity.js';
import { ruleNamesFunction } from './rules.js';

export interface Explained {
  request: PolicyRequest;
  decision: Decision;
  /** SQL: every function and operator the operation calls, and why each is allowed or not. */
  functions?: ExplainedFunction[];
}

/** What the SQL classifier knows of one function (core/sql's reportedFunctionClass and reasons). */
export interface FunctionFacts {
  class: string;
  reason: string;
  needsRule: boolean;
  exactOnly: boolean;
}

export interface ExplainedFunction {
  /** As written, or schema-qualified as the server resolves it when a rule must name it. */
  name: string;
  class: string;
  /** Why the proxy treats it so. */
  reason: string;
  /** Allow rules (of those that apply to the identity) naming it in postgres.functions. */
  namedBy: string[];
  /** Read-only, or named by one of `namedBy` the way its class requires. */
  covered: boolean;
}

/**
 * The functions of one operation with the allow rules that name them. Read-only built-ins
 * are listed as written; the others by the names an allow rule must cover (request.unlisted).
 */
export function explainFunctions(policy: CompiledPolicy, identity: Identity, request: PolicyRequest, facts: (name: string) => FunctionFacts): ExplainedFunction[] {
  if (request.protocol !== 'postgres') return [];
  const out: ExplainedFunction[] = [];
  const seen = new Set<string>();
  const allowRules = policy.rules.filter((r) => r.action === 'allow' && r.protocol !== 'kubernetes' && r.matchesIdentity(identity));
  const add = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const f = facts(name);
    const namedBy: string[] = [];
    let covered = !f.needsRule;
    if (f.needsRule) {
      for (const r of allowRules) {
        const how = ruleNamesFunction(r, name);
        if (how === undefined) continue;
        namedBy.push(how === 'pattern' && f.exactOnly ? `${r.name} (by a pattern with *, which does not open it)` : r.name);
        if (how === 'exact' || !f.exactOnly) covered = true;
      }
    }
    out.push({ name, class: f.class, reason: f.reason, namedBy, covered });
  };
  for (const n of request.functions) if (!facts(n).needsRule) add(n);
  for (const n of request.unlisted ?? request.functions) add(n);
  return out;
}

export function renderExplanation(policy: CompiledPolicy, identity: Identity, items: Explained[], overall: Decision): string {
  const lines: string[] = [];
  lines.push(`policy:   ${policy.name} (default ${policy.defaultAction}, enforcement ${policy.enforcement})`);
  lines.push(`subject:  ${identity.subject}${identity.groups.length ? ` (groups: ${identity.groups.join(', ')})` : ''}`);
  items.forEach((it, i) => {
    lines.push('');
    if (items.length > 1) lines.push(`operation ${i + 1} of ${items.length}`);
    lines.push(`request:  ${it.request.protocol} ${describeRequest(it.request)}`);
    lines.push(`          ${requestFields(it.request)}`);
    if (it.functions?.length) lines.push(...functionLines(it.functions));
    lines.push(...decisionLines(policy, it.decision));
  });
  if (items.length > 1) {
    lines.push('');
    lines.push(`overall:  ${overall.action}${overall.enforced ? '' : ' (not enforced: observe mode)'} by rule ${overall.rule} (the most restrictive decision of the ${items.length} operations)`);
  }
  return `${lines.join('\n')}\n`;
}

function functionLines(fns: ExplainedFunction[]): string[] {
  const width = Math.max(...fns.map((f) => f.name.length));
  const out = ['functions:'];
  for (const f of fns) {
    const verdict = !f.namedBy.length && f.covered
      ? 'ok'
      : f.covered
        ? `ok, named by ${f.namedBy.join(', ')}`
        : f.namedBy.length
          ? `NOT OPEN: ${f.namedBy.join(', ')}`
          : 'NOT OPEN: no allow rule names it';
    out.push(`  ${f.covered ? '+' : '!'} ${f.name.padEnd(width)}  ${f.class}: ${verdict}`);
    out.push(`    ${''.padEnd(width)}  ${f.reason}`);
  }
  if (fns.some((f) => f.namedBy.length || !f.covered)) out.push('  (one allow rule must name every function that needs naming; names from different rules do not add up)');
  return out;
}

function decisionLines(policy: CompiledPolicy, d: Decision): string[] {
  const out = [
    `decision: ${d.action}${d.enforced ? '' : ' (not enforced: observe mode, the request proceeds)'}`,
    `rule:     ${d.rule}`,
    `reason:   ${d.reason}`,
  ];
  if (d.approval) {
    const a = d.approval;
    out.push(
      `approval: mode ${a.mode}, scope ${a.scope}${a.scope === 'window' ? ` (${a.windowMinutes} min)` : ''}, wait ${a.waitSeconds}s, ${a.minApprovals} approval(s)${a.approverGroups.length ? ` from ${a.approverGroups.join(', ')}` : ''}`,
    );
  }
  if (d.matched.length === 0) {
    out.push('matched:  (no rule)');
  } else {
    out.push('matched:');
    const width = Math.max(...d.matched.map((m) => m.length));
    for (const name of d.matched) {
      const r = policy.rules.find((x) => x.name === name);
      const tier = r?.tier === 'guard' ? ' (built-in)' : r?.tier === 'fallback' ? ' (built-in fallback)' : '';
      out.push(`  ${name === d.rule ? '*' : '-'} ${name.padEnd(width)}  ${r?.action ?? '?'}${tier}`);
    }
  }
  return out;
}

function requestFields(r: PolicyRequest): string {
  if (r.protocol === 'postgres') {
    return `connection=${r.connection} statement=${r.statement} qualifiers=[${r.qualifiers.join(',')}] tables=[${r.tables.join(',')}] functions=[${r.functions.join(',')}]`;
  }
  if (r.nonResource) return `verb=${r.verb} nonResourceURL=${r.path}`;
  return `verb=${r.verb} apiGroup="${r.apiGroup}" apiVersion=${r.apiVersion} namespace="${r.namespace}" resource=${r.resource} subresource="${r.subresource}" name="${r.name}"`;
}
