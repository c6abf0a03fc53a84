// Proxy metrics. Labels stay bounded: verb (fixed set), API group (bounded by the
// cluster's API surface), decision (3) and status class (5); never names or namespaces.

import { counter, gauge, histogram, LATENCY_BUCKETS } from '../../core/metrics.js';

export const requestsTotal = counter({
  name: 'agentgate_kube_requests_total',
  help: 'Kubernetes API requests through the sidecar, by verb, API group, decision and HTTP status class.',
  labelNames: ['verb', 'group', 'decision', 'code'] as const,
});

export const requestDuration = histogram({
  name: 'agentgate_kube_request_duration_seconds',
  help: 'Time from request received to response complete (watches, log follows and exec sessions excluded).',
  labelNames: ['verb'] as const,
  buckets: LATENCY_BUCKETS,
});

export const openWatches = gauge({
  name: 'agentgate_kube_watches_open',
  help: 'Watches and followed logs currently streaming through the sidecar.',
});

export const execSessionsOpen = gauge({
  name: 'agentgate_kube_exec_sessions_open',
  help: 'exec and attach sessions currently open.',
});

export const execSessionsTotal = counter({
  name: 'agentgate_kube_exec_sessions_total',
  help: 'exec and attach sessions by outcome (allowed, denied, refused).',
  labelNames: ['outcome'] as const,
});

export const refusedBodies = counter({
  name: 'agentgate_kube_refused_responses_total',
  help: 'Upstream responses not passed on because they could not be masked (not JSON where JSON was expected, invalid JSON).',
  labelNames: ['why'] as const,
});

export function codeClass(code: number): string {
  return code >= 100 && code < 600 ? `${Math.floor(code / 100)}xx` : 'other';
}

export function groupLabel(group: string, nonResource: boolean): string {
  return nonResource ? 'non-resource' : group === '' ? 'core' : group;
}
