// approval-roundtrip: how long from an approver's decision until the waiting
// sidecar may forward the operation, with 100 requests pending and 100 sidecar
// long-polls held open. The service runs as the shipped binary (`agentgate
// approval`) in its own process, on embedded storage (PGlite) and on a real
// PostgreSQL 15 cluster; this process plays the sidecars (ApprovalClient) and the
// approver (oidc-provider 8 tokens).
//
// Each sample: t0 = the approver sends POST /approve; t1 = the sidecar's
// waitForDecision has returned `approved` AND its POST /use (consume the once
// approval) has returned: the moment it would forward. Direct path: one
// authenticated GET of the same request (the floor any decision pays: an HTTP round
// trip plus token verification), measured in the same run.
//
//   approval-roundtrip-<store>-p50 / -p99   ms, ratio against the direct GET p50
//   approval-rss-<store>                     MiB, the service process after the run

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ApprovalClient } from '../approval/client.js';
import { startCluster } from '../test/support/postgres.js';
import { freePort } from '../test/support/ports.js';
import { POD_A, configYaml, startIdp } from '../test/approval/harness.js';
import type { Idp } from '../test/approval/harness.js';
import type { Benchmark, BenchResult } from './types.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
const PENDING = 100;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function roundtrip(store: 'embedded' | 'postgres'): Promise<BenchResult[]> {
  const idp: Idp = await startIdp();
  const cluster = store === 'postgres' ? await startCluster() : undefined;
  const port = await freePort();
  const file = path.join(idp.dir, 'bench.yaml');
  const storage = cluster ? `storage:\n  postgres:\n    url: ${cluster.url()}\n` : `storage:\n  embedded:\n    dir: ${path.join(idp.dir, 'data')}\n`;
  fs.writeFileSync(file, `${configYaml(idp)}${storage}`.replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${port}`));
  const child = spawn(process.execPath, [MAIN, 'approval', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, AGENTGATE_LOG_LEVEL: 'warn' } });
  const url = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) break;
      if (i > 600 || child.exitCode !== null) throw new Error('the approval service did not become ready');
      await new Promise((r) => setTimeout(r, 100));
    }
    const sidecar = new ApprovalClient({ url, token: await idp.sa.token(POD_A), pollMs: 60_000 });
    const alice = await idp.oidc.token('alice@example.com');
    const reqs = [];
    for (let i = 0; i < PENDING; i++) {
      reqs.push(await sidecar.create({ protocol: 'postgres', connection: 'payments', rule: 'approve-updates', operation: `UPDATE cards SET status = 1 WHERE id = ${i}` }));
    }
    // Every request has a sidecar waiting on it, as 100 held statements would.
    const learned = new Map<string, Promise<number>>();
    for (const r of reqs) {
      learned.set(r.id, sidecar.waitForDecision(r.id, { timeoutMs: 120_000 }).then(async (d) => {
        if (d.state !== 'approved') throw new Error(`request ${d.id} ended ${d.state}`);
        await sidecar.use(d.id);
        return performance.now();
      }));
    }
    await new Promise((r) => setTimeout(r, 500)); // let every long-poll reach the service
    const direct: number[] = [];
    for (const r of reqs.slice(0, 50)) {
      const t = performance.now();
      await sidecar.get(r.id);
      direct.push(performance.now() - t);
    }
    const samples: number[] = [];
    for (const r of reqs) {
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/approvals/${r.id}/approve`, {
        method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: '{"reason":"bench"}',
      });
      if (!res.ok) throw new Error(`approve failed: HTTP ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
      samples.push((await learned.get(r.id)!) - t0);
    }
    const d50 = pct(direct, 50);
    const note = `${PENDING} pending, ${PENDING} long-polls held; decision → sidecar learned + used; direct = one authenticated GET`;
    return [
      { bench: `approval-roundtrip-${store}-p50`, value: pct(samples, 50), unit: 'ms', direct: d50, ratio: pct(samples, 50) / d50, note },
      { bench: `approval-roundtrip-${store}-p99`, value: pct(samples, 99), unit: 'ms', direct: d50, ratio: pct(samples, 99) / d50, note: 'target p99 < 100 ms' },
      { bench: `approval-rss-${store}`, value: rssMiB(child.pid!), unit: 'MiB', note: 'the service process after the run' },
    ];
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await cluster?.stop();
    await idp.close();
  }
}

export const benchmarks: Benchmark[] = [
  { name: 'approval-roundtrip-embedded', run: () => roundtrip('embedded') },
  { name: 'approval-roundtrip-postgres', run: () => roundtrip('postgres') },
];
