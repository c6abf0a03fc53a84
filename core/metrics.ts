// One prom-client registry per process, shared by every component in it, so a
// single /metrics endpoint shows the proxy, policy, masking and audit together.

import { Registry, collectDefaultMetrics, Counter, Gauge, Histogram } from 'prom-client';
import type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration } from 'prom-client';
import http from 'node:http';

export const registry = new Registry();
let defaultsOn = false;

/** Process metrics (CPU, RSS, event-loop lag, GC) prefixed `agentgate_`. */
export function enableDefaultMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: registry, prefix: 'agentgate_' });
  // prom-client names these three gauges `_total`, which promtool rejects (a
  // `_total` suffix is for counters); the per-type gauges without the suffix stay.
  for (const n of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`agentgate_nodejs_active_${n}_total`);
}

// Get-or-create, so that modules loaded twice (tests, hot paths) never throw
// "metric already registered" and always share one series.
export function counter<L extends string>(cfg: CounterConfiguration<L>): Counter<L> {
  return (registry.getSingleMetric(cfg.name) as Counter<L> | undefined) ?? new Counter({ ...cfg, registers: [registry] });
}
export function gauge<L extends string>(cfg: GaugeConfiguration<L>): Gauge<L> {
  return (registry.getSingleMetric(cfg.name) as Gauge<L> | undefined) ?? new Gauge({ ...cfg, registers: [registry] });
}
export function histogram<L extends string>(cfg: HistogramConfiguration<L>): Histogram<L> {
  return (registry.getSingleMetric(cfg.name) as Histogram<L> | undefined) ?? new Histogram({ ...cfg, registers: [registry] });
}

/** Latency buckets from 50 µs to 10 s: proxies add microseconds, approvals take minutes. */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Serves `GET /metrics` in the Prometheus text format. */
export function startMetricsServer(host: string, port: number): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      try {
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(body);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`metrics collection failed: ${(err as Error).message}\n`);
      }
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: metrics are at /metrics\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
