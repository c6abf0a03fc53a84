// Human and JSON renderings of a decision, for `agentgate policy explain`.

import type { Decision, PolicyRequest } from './types.js';
import type { CompiledPolicy } from './engine.js';
import { describeRequest } from './engine.js';
import type { Identity } from '../identity.js';

export interface Explained {
  request: PolicyRequest;
  decision: Decision;
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
    lines.push(...decisionLines(policy, it.decision));
  });
  if (items.length > 1) {
    lines.push('');
    lines.push(`overall:  ${overall.action}${overall.enforced ? '' : ' (not enforced: observe mode)'} by rule ${overall.rule} (the most restrictive decision of the ${items.length} operations)`);
  }
  return `${lines.join('\n')}\n`;
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
