// Env rewriting: point in-cluster clients and libpq at the sidecar. Our variables
// go first, so a user variable defined later as `$(PGHOST)` expands to the sidecar;
// a variable the user already set is replaced where it stands.

import type { Container, EnvVar } from './pod-types.js';
import type { ConnectionConfig } from './config.js';
import { PORTS } from './names.js';

/** `payments-db` → `AGENTGATE_PAYMENTS_DB_URL` */
export function connectionUrlVar(name: string): string {
  return `AGENTGATE_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_URL`;
}

/** The variables every agent container gets, in order. */
export function agentEnv(connections: [string, ConnectionConfig][]): EnvVar[] {
  const env: EnvVar[] = [
    { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
    { name: 'KUBERNETES_SERVICE_PORT', value: String(PORTS.kubernetes) },
    { name: 'KUBERNETES_SERVICE_PORT_HTTPS', value: String(PORTS.kubernetes) },
  ];
  if (connections.length > 0) {
    env.push({ name: 'PGHOST', value: '127.0.0.1' }, { name: 'PGPORT', value: String(connections[0][1].port) });
  }
  for (const [name, c] of connections) {
    const db = c.database ? `/${encodeURIComponent(c.database)}` : '';
    env.push({ name: connectionUrlVar(name), value: `postgres://127.0.0.1:${c.port}${db}` });
  }
  return env;
}

/** The container with `wanted` set; `replaced` names the variables whose explicit value differed. */
export function rewriteEnv(c: Container, wanted: EnvVar[]): { container: Container; replaced: string[] } {
  const byName = new Map(wanted.map((e) => [e.name, e]));
  const replaced: string[] = [];
  const existing = c.env ?? [];
  const present = new Set<string>();
  const kept: EnvVar[] = [];
  for (const e of existing) {
    const w = byName.get(e.name);
    if (!w) {
      kept.push(e);
      continue;
    }
    if (present.has(e.name)) continue; // a duplicate entry: the API server keeps the last one, we keep one
    present.add(e.name);
    if (e.value !== w.value || e.valueFrom !== undefined) replaced.push(e.name);
    kept.push(w);
  }
  const added = wanted.filter((w) => !present.has(w.name));
  return { container: { ...c, env: [...added, ...kept] }, replaced };
}
