// The policy engine's counters on the shared registry. Labels are bounded: three
// actions × two protocols × enforced or not; reload results are success|failure.

import { counter, gauge } from '../metrics.js';
import type { Action } from './types.js';

// A decision runs per statement, and prom-client hashes label values on every inc();
// decisions are counted in a plain array and handed to the counter at scrape time.
const ACTIONS: readonly Action[] = ['allow', 'approve', 'deny'];
const PROTOCOLS = ['kubernetes', 'postgres'] as const;
const counts = new Float64Array(12);
const reported = new Float64Array(12);

counter({
  name: 'agentgate_policy_decisions_total',
  help: 'Policy decisions, by action, protocol and whether they were enforced (false in observe mode).',
  labelNames: ['action', 'protocol', 'enforced'] as const,
  collect() {
    for (let i = 0; i < 12; i++) {
      const delta = counts[i] - reported[i];
      if (delta === 0) continue;
      reported[i] = counts[i];
      this.inc({ action: ACTIONS[i >> 2], protocol: PROTOCOLS[(i >> 1) & 1], enforced: i & 1 ? 'true' : 'false' }, delta);
    }
  },
});

const reloads = counter({
  name: 'agentgate_policy_reloads_total',
  help: 'Policy loads and reloads from file, by result; a failed reload keeps the last good policy.',
  labelNames: ['result'] as const,
});

const loaded = gauge({
  name: 'agentgate_policy_loaded',
  help: '1 while a valid policy is in force, 0 while every request is denied because none could be loaded.',
});

const ACTION_INDEX: Record<Action, number> = { allow: 0, approve: 1, deny: 2 };

export function countDecision(action: Action, protocol: string, enforced: boolean): void {
  counts[(ACTION_INDEX[action] << 2) | (protocol === 'postgres' ? 2 : 0) | (enforced ? 1 : 0)]++;
}

export function countReload(result: 'success' | 'failure'): void {
  reloads.labels(result).inc();
}

export function setPolicyLoaded(ok: boolean): void {
  loaded.set(ok ? 1 : 0);
}
