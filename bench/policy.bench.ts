// Cost of a policy decision (it runs per SQL statement and per Kubernetes request) and
// of classifying a Kubernetes request. No direct path exists for a decision; the
// figure to compare with is the request it guards (a loopback round trip is ~30-60 µs).

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile, parsePolicy } from '../core/policy/load.js';
import type { Policy, PolicyRequest } from '../core/policy/types.js';
import type { Identity } from '../core/identity.js';
import { requestInfo } from '../core/kube/request-info.js';
import type { Benchmark, BenchResult } from './types.js';

// dist/bench → repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const agent: Identity = { subject: 'system:serviceaccount:payments:agent', groups: ['system:serviceaccounts', 'system:serviceaccounts:payments', 'system:authenticated'], via: 'local-token' };

function nsPer(n: number, fn: () => void): number {
  for (let i = 0; i < Math.min(n, 50_000); i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t0) / n;
}

function decideBench(name: string, policy: Policy, request: PolicyRequest, note: string): BenchResult {
  const ns = nsPer(500_000, () => policy.decide(agent, request));
  return { bench: name, value: ns / 1000, unit: 'µs/decision', note };
}

/** A policy of 50 rules, most of them for other teams, as a large shared policy would be. */
function bigPolicy(): Policy {
  const rules: string[] = [];
  for (let i = 0; i < 48; i++) {
    rules.push(`    - { name: team-${i}-read, subjects: ["system:serviceaccount:team-${i}:*"], postgres: { connections: [db-${i}], statements: [select], tables: ["app_${i}.*", "public.t${i}_*"] }, action: allow }`);
  }
  rules.push('    - { name: no-destruction, postgres: { statements: [drop, truncate, delete-without-where, update-without-where] }, action: deny }');
  rules.push('    - { name: payments-read, subjects: ["system:serviceaccount:payments:*"], postgres: { connections: [payments], statements: [select], tables: ["public.*"] }, action: allow }');
  const r = parsePolicy(`apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: big }\nspec:\n  rules:\n${rules.join('\n')}\n`, 'big.yaml');
  if (!r.policy) throw new Error(r.errors.map((e) => e.message).join('; '));
  return r.policy;
}

export const benchmarks: Benchmark[] = [
  {
    name: 'policy-decide',
    async run() {
      const loaded = loadPolicyFile(path.join(ROOT, 'examples/policies/payments.yaml'));
      if (!loaded.policy) throw new Error('examples/policies/payments.yaml is invalid');
      const p = loaded.policy;
      const select: PolicyRequest = { protocol: 'postgres', connection: 'payments', statement: 'select', qualifiers: [], tables: ['public.cards', 'public.orders', 'public.customers'], functions: ['now', 'lower'], unlisted: [], exactOnly: [] };
      const kube = requestInfo('GET', '/api/v1/namespaces/payments/pods?watch=true');
      return [
        decideBench('policy-decide-pg', p, select, 'payments.yaml (7 rules + 4 built-ins), SELECT joining 3 tables calling 2 functions'),
        decideBench('policy-decide-kube', p, kube, 'payments.yaml, watch pods in a namespace'),
        decideBench('policy-decide-pg-50-rules', bigPolicy(), select, '50 rules, the matching ones last'),
      ];
    },
  },
  {
    name: 'policy-request-info',
    async run() {
      const ns = nsPer(500_000, () => requestInfo('GET', '/apis/apps/v1/namespaces/payments/deployments/api?fieldSelector=metadata.name%3Dapi&watch=1'));
      return [{ bench: 'policy-request-info', value: ns / 1000, unit: 'µs/request', note: 'RequestInfoFactory classification of a watch with a fieldSelector' }];
    },
  },
];
