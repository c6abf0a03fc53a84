// `kube-get` and `kube-list-mask`: GET of one pod and LIST of 500 ConfigMaps (a third
// holding PANs) measured in one run against the API server DOUBLE (test/support/
// kube-api-double.ts) four ways:
//   direct         autocannon → double (HTTPS, bearer token)
//   undici         autocannon → bare undici pass-through proxy (HTTPS) → double: the floor for any Node proxy
//   kubectl-proxy  autocannon → `kubectl proxy` (plain HTTP on loopback, a Go reverse proxy) → double
//   sidecar        autocannon → agentgate's proxy (HTTPS, policy + masking + chained audit on) → double
// Every server runs in its own child process so the load generator does not share
// their event loops; the sidecar reports its own CPU time and RSS over IPC.
// Figures: requests/s at 10 connections (autocannon), ratios, added p50/p99 at one
// connection (sequential undici requests timed with hrtime), the
// sidecar's CPU per request, and the JSON masker's throughput on the LIST body.

import { fork, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { Benchmark, BenchResult } from './types.js';

const ROLE_ENV = 'AGENTGATE_KUBE_BENCH_ROLE';
const KUBECTL = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';
const LIST_SIZE = 500;
const GET_PATH = '/api/v1/namespaces/bench/pods/web-0';
const LIST_PATH = '/api/v1/namespaces/bench/configmaps';
const THROUGHPUT_SECONDS = Number(process.env.KUBE_BENCH_SECONDS ?? 5);
const LATENCY_SECONDS = Math.max(2, Math.round(THROUGHPUT_SECONDS * 0.6));
/** Interleaved rounds per target (KUBE_BENCH_ROUNDS, default 3); THROUGHPUT_SECONDS and LATENCY_SECONDS are split over them. */
const ROUNDS = Math.max(1, Number(process.env.KUBE_BENCH_ROUNDS ?? 3));
const ROUND_SECONDS = Math.max(1, THROUGHPUT_SECONDS / ROUNDS);
const LATENCY_ROUND_SECONDS = Math.max(0.5, LATENCY_SECONDS / ROUNDS);

interface Ready {
  url: string;
  token: string;
  caPem?: string;
  pid: number;
}

// ---------------------------------------------------------------- child roles

async function childDouble(): Promise<void> {
  const { KubeApiDouble } = await import('../test/support/kube-api-double.js');
  const d = await KubeApiDouble.start({ token: 'bench-upstream-token' });
  d.put('namespaces', { metadata: { name: 'bench' } });
  d.put('pods', { metadata: { name: 'web-0', namespace: 'bench', labels: { app: 'web' } } });
  for (let i = 0; i < LIST_SIZE; i++) {
    const data: Record<string, string> = { 'config.yaml': `replicas: ${i % 7}\nendpoint: https://svc-${i}.bench.svc:8443\nretry: 3\n`, owner: `team-${i % 13}` };
    if (i % 3 === 0) data.card = `customer ${i} card 4111 1111 1111 1111 exp 12/29`;
    d.put('configmaps', { metadata: { name: `cm-${String(i).padStart(4, '0')}`, namespace: 'bench', labels: { tier: 'bench' } }, data });
  }
  d.requests.length = 0;
  // Keep the request log from growing without bound during the run.
  setInterval(() => (d.requests.length = 0), 1000).unref();
  process.send!({ url: d.url, token: d.token, caPem: d.caPem, pid: process.pid } satisfies Ready);
}

async function childUndici(upstream: Ready): Promise<void> {
  const { Pool } = await import('undici');
  const { createServingIdentity } = await import('../sidecar/kubernetes/tls-identity.js');
  const id = createServingIdentity();
  const pool = new Pool(upstream.url, { connections: 32, connect: { ca: upstream.caPem } });
  const server = https.createServer({ key: id.keyPem, cert: id.certPem }, (req, res) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
    pool.request({ path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers }).then(
      (up) => {
        const h: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') h[k] = v;
        res.writeHead(up.statusCode, h);
        up.body.pipe(res);
      },
      (err: Error) => {
        res.writeHead(502);
        res.end(err.message);
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  process.on('message', (m: string) => {
    if (m === 'stats') process.send!({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss });
  });
  process.on('SIGTERM', () => process.exit(0)); // lets --cpu-prof write its profile
  process.send!({ url: `https://127.0.0.1:${port}`, token: upstream.token, caPem: id.caPem, pid: process.pid } satisfies Ready);
}

/**
 * KUBE_BENCH_AUDIT=off (a diagnostic, never a reported product figure): events are built but
 * not chained or written, to tell the proxy's own cost from the audit writer's.
 */
const NULL_RECORD = { seq: 0, prevHash: '', hash: '' } as never;
const nullAudit = {
  append: () => NULL_RECORD,
  health: () => ({ ok: true }) as const,
  flush: async () => undefined,
  close: async () => undefined,
};

async function childSidecar(upstream: Ready): Promise<void> {
  const { startKubernetesProxy } = await import('../sidecar/kubernetes/proxy.js');
  const { parsePolicy } = await import('../core/policy/load.js');
  const { openAuditWriter } = await import('../core/audit/open.js');
  const { createLogger } = await import('../core/log.js');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-kube-bench-'));
  await writeFile(path.join(dir, 'token'), upstream.token);
  await writeFile(path.join(dir, 'ca.crt'), upstream.caPem ?? '');
  const loaded = parsePolicy(
    `apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: bench }
spec:
  rules:
    - name: read
      kubernetes: { verbs: [get, list, watch], resources: ["*"] }
      action: allow
`,
    'bench-policy.yaml',
  );
  const policy = loaded.policy!;
  const audit = await openAuditWriter({ file: path.join(dir, 'audit.jsonl'), checkpointFile: false });
  const proxy = await startKubernetesProxy(
    { listen: '127.0.0.1:0', identityDir: path.join(dir, 'identity'), upstream: { server: upstream.url, caFile: path.join(dir, 'ca.crt'), tokenFile: path.join(dir, 'token') } },
    { policy: { current: () => policy }, audit: process.env.KUBE_BENCH_AUDIT === 'off' ? nullAudit : audit, log: createLogger('kube-bench', 'silent'), pod: { namespace: 'bench', name: 'agent-0', uid: 'u', serviceAccount: 'agent' } },
  );
  const token = (await readFile(path.join(dir, 'identity', 'token'), 'utf8')).trim();
  process.on('message', (m: string) => {
    if (m === 'stats') process.send!({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss });
  });
  // An orderly exit on SIGTERM too, so that --cpu-prof gets to write its profile.
  const stop = () => void proxy.close().then(() => audit.close()).then(() => rm(dir, { recursive: true, force: true })).finally(() => process.exit(0));
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  process.send!({ url: `https://${proxy.address}`, token, caPem: proxy.caPem, pid: process.pid } satisfies Ready);
}

if (process.env[ROLE_ENV]) {
  const role = process.env[ROLE_ENV];
  const upstream = process.env.KUBE_BENCH_UPSTREAM ? (JSON.parse(process.env.KUBE_BENCH_UPSTREAM) as Ready) : undefined;
  const run = role === 'double' ? childDouble() : role === 'undici' ? childUndici(upstream!) : childSidecar(upstream!);
  run.catch((err: Error) => {
    process.stderr.write(`kube bench child ${role}: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}

// ---------------------------------------------------------------- parent

function startChild(role: string, upstream?: Ready): Promise<{ child: ChildProcess; ready: Ready }> {
  // KUBE_BENCH_CPU_PROF=DIR: the sidecar and undici children write V8 CPU profiles into DIR when they exit.
  const prof = (role === 'sidecar' || role === 'undici') && process.env.KUBE_BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.KUBE_BENCH_CPU_PROF] : [];
  const child = fork(fileURLToPath(import.meta.url), [], {
    execArgv: [...process.execArgv, ...prof],
    env: { ...process.env, [ROLE_ENV]: role, ...(upstream ? { KUBE_BENCH_UPSTREAM: JSON.stringify(upstream) } : {}), AGENTGATE_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, ready: m as Ready }));
    child.once('exit', (code) => reject(new Error(`kube bench child ${role} exited with ${code}`)));
  });
}

async function startKubectlProxy(upstream: Ready, dir: string): Promise<{ child: ChildProcess; url: string }> {
  await writeFile(path.join(dir, 'double-ca.crt'), upstream.caPem ?? '');
  const kubeconfig = path.join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster: { server: "${upstream.url}", certificate-authority: "${path.join(dir, 'double-ca.crt')}" }\nusers:\n- name: u\n  user: { token: "${upstream.token}" }\ncontexts:\n- name: c\n  context: { cluster: d, user: u }\ncurrent-context: c\n`,
  );
  const child = spawn(KUBECTL, ['proxy', '--port=0', '--address=127.0.0.1', `--kubeconfig=${kubeconfig}`], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', HOME: dir } });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /Starting to serve on (127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(`http://${m[1]}`);
    });
    child.once('exit', (code) => reject(new Error(`kubectl proxy exited with ${code}`)));
  });
  return { child, url };
}

interface Load {
  rps: number;
  p50: number;
  p99: number;
  bytesPerSec: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, token: string | undefined, connections: number, seconds: number): Promise<Load> {
  const r = await autocannon({
    url,
    connections,
    duration: seconds,
    pipelining: 1,
    headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, bytesPerSec: r.throughput.average, errors: r.errors, non2xx: r.non2xx };
}

/** Sequential requests on one keep-alive connection, timed with hrtime (autocannon rounds to 1 ms); ms each. */
async function latency(url: string, token: string | undefined, seconds: number): Promise<number[]> {
  const { Pool } = await import('undici');
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 1, connect: { rejectUnauthorized: false } });
  const times: number[] = [];
  const end = Date.now() + seconds * 1000;
  try {
    while (Date.now() < end) {
      const t0 = process.hrtime.bigint();
      const r = await pool.request({ path: u.pathname + u.search, method: 'GET', headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
      await r.body.arrayBuffer();
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    await pool.close();
  }
  return times;
}

async function sidecarStats(child: ChildProcess): Promise<{ cpu: NodeJS.CpuUsage; rss: number }> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as { cpu: NodeJS.CpuUsage; rss: number }));
    child.send('stats');
  });
}

async function runPair(name: 'kube-get' | 'kube-list-mask', urlPath: string): Promise<BenchResult[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-kube-bench-'));
  const children: ChildProcess[] = [];
  try {
    const double = await startChild('double');
    children.push(double.child);
    const undici = await startChild('undici', double.ready);
    children.push(undici.child);
    const sidecar = await startChild('sidecar', double.ready);
    children.push(sidecar.child);
    const kproxy = await startKubectlProxy(double.ready, dir);
    children.push(kproxy.child);

    const targets: [string, string, string | undefined][] = [
      ['direct', double.ready.url, double.ready.token],
      ['undici', undici.ready.url, undefined],
      ['kubectl-proxy', kproxy.url, undefined],
      ['sidecar', sidecar.ready.url, sidecar.ready.token],
    ];
    // undici passes the client's Authorization through: give it the upstream token.
    targets[1]![2] = double.ready.token;

    // The targets are measured in interleaved rounds and each figure is the median of its
    // rounds: on a shared machine the load of the moment otherwise favours whichever target
    // happened to run in a quiet second (one pass each in a row gave ratios off by 2× either way).
    const through: Record<string, Load> = {};
    const rounds: Record<string, Load[]> = {};
    const samples: Record<string, number[]> = {};
    // CPU per request of the two Node proxies, measured the same way: the floor and ours.
    const cpuUs: Record<string, number> = { sidecar: 0, undici: 0 };
    const served: Record<string, number> = { sidecar: 0, undici: 0 };
    const statsOf: Record<string, ChildProcess> = { sidecar: sidecar.child, undici: undici.child };
    for (const [, base, token] of targets) await load(base + urlPath, token, 2, 1); // warm-up: connections, JIT
    for (let round = 0; round < ROUNDS; round++) {
      for (const [label, base, token] of targets) {
        const child = statsOf[label];
        const before = child ? await sidecarStats(child) : undefined;
        const l = await load(base + urlPath, token, 10, ROUND_SECONDS);
        if (l.non2xx || l.errors) throw new Error(`${name} ${label}: ${l.non2xx} non-2xx, ${l.errors} errors`);
        (rounds[label] ??= []).push(l);
        if (before && child) {
          const after = await sidecarStats(child);
          cpuUs[label]! += after.cpu.user - before.cpu.user + (after.cpu.system - before.cpu.system);
          served[label]! += l.rps * ROUND_SECONDS;
        }
        (samples[label] ??= []).push(...(await latency(base + urlPath, token, LATENCY_ROUND_SECONDS)));
      }
    }
    const cpuPerReq = cpuUs.sidecar! / Math.max(1, served.sidecar!);
    const undiciCpuPerReq = cpuUs.undici! / Math.max(1, served.undici!);
    const lat: Record<string, { p50: number; p99: number }> = {};
    for (const [label] of targets) {
      const byRps = [...rounds[label]!].sort((x, y) => x.rps - y.rps);
      through[label] = byRps[Math.floor(byRps.length / 2)]!;
      const t = samples[label]!.sort((x, y) => x - y);
      lat[label] = { p50: t[Math.floor(t.length * 0.5)]!, p99: t[Math.floor(t.length * 0.99)]! };
    }
    const rss = (await sidecarStats(sidecar.child)).rss;
    const d = through.direct!.rps;
    const out: BenchResult[] = [];
    for (const [label] of targets) {
      out.push({ bench: `${name}-${label}`, value: through[label]!.rps, unit: 'req/s', direct: d, ratio: through[label]!.rps / d, note: `10 connections, median of ${ROUNDS} interleaved rounds of ${ROUND_SECONDS.toFixed(1)}s` });
    }
    const s = through.sidecar!.rps;
    out.push({ bench: `${name}-sidecar-vs-undici`, value: s / through.undici!.rps, unit: 'ratio', note: 'target ≥ 0.9' });
    out.push({ bench: `${name}-sidecar-vs-kubectl-proxy`, value: s / through['kubectl-proxy']!.rps, unit: 'ratio', note: 'target ≥ 0.8 (kubectl proxy serves plain HTTP to its client, the others TLS)' });
    out.push({ bench: `${name}-sidecar-added-p50`, value: lat.sidecar!.p50 - lat.direct!.p50, unit: 'ms', direct: lat.direct!.p50, note: `1 connection, sequential; p50 ${lat.sidecar!.p50.toFixed(3)} ms vs ${lat.direct!.p50.toFixed(3)} ms direct; target ≤ 0.3` });
    out.push({ bench: `${name}-sidecar-added-p99`, value: lat.sidecar!.p99 - lat.direct!.p99, unit: 'ms', direct: lat.direct!.p99, note: `1 connection, sequential; p99 ${lat.sidecar!.p99.toFixed(3)} ms vs ${lat.direct!.p99.toFixed(3)} ms direct` });
    out.push({ bench: `${name}-undici-added-p50`, value: lat.undici!.p50 - lat.direct!.p50, unit: 'ms', direct: lat.direct!.p50 });
    out.push({ bench: `${name}-kubectl-proxy-added-p50`, value: lat['kubectl-proxy']!.p50 - lat.direct!.p50, unit: 'ms', direct: lat.direct!.p50 });
    out.push({ bench: `${name}-sidecar-cpu`, value: cpuPerReq, unit: 'µs CPU/req', note: 'sidecar process user+system at 10 connections' });
    out.push({ bench: `${name}-undici-cpu`, value: undiciCpuPerReq, unit: 'µs CPU/req', note: `bare undici proxy, same measure; sidecar/undici = ${(cpuPerReq / undiciCpuPerReq).toFixed(2)}` });
    out.push({ bench: `${name}-sidecar-rss`, value: rss / 1024 / 1024, unit: 'MiB', note: 'sidecar RSS after the run' });
    if (name === 'kube-list-mask') {
      out.push({ bench: `${name}-sidecar-MBps`, value: through.sidecar!.bytesPerSec / 1e6, unit: 'MB/s', direct: through.direct!.bytesPerSec / 1e6, ratio: through.sidecar!.bytesPerSec / through.direct!.bytesPerSec, note: 'LIST bytes delivered masked, end to end' });
      out.push(await maskerThroughput(double.ready, urlPath));
    }
    return out;
  } finally {
    for (const c of children) c.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The JSON masker alone on the real LIST body (what masking costs per byte). */
async function maskerThroughput(upstream: Ready, urlPath: string): Promise<BenchResult> {
  const { request, Agent } = await import('undici');
  const { createJsonMasker } = await import('../core/mask/json.js');
  const dispatcher = new Agent({ connect: { ca: upstream.caPem } });
  const r = await request(upstream.url + urlPath, { headers: { authorization: `Bearer ${upstream.token}` }, dispatcher });
  const body = Buffer.from(await r.body.arrayBuffer());
  await dispatcher.close();
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += 16384) chunks.push(body.subarray(i, i + 16384));
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  while (Number(process.hrtime.bigint() - t0) < 2e9) {
    const m = createJsonMasker();
    for (const c of chunks) m.write(c);
    m.end();
    bytes += body.length;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { bench: 'kube-list-mask-masker-MBps', value: bytes / secs / 1e6, unit: 'MB/s', note: `JSON masker on the ${LIST_SIZE}-ConfigMap LIST body (${(body.length / 1024).toFixed(0)} KiB) in 16 KiB chunks; target ≥ 100` };
}

export const benchmarks: Benchmark[] = [
  { name: 'kube-get', run: () => runPair('kube-get', GET_PATH) },
  { name: 'kube-list-mask', run: () => runPair('kube-list-mask', LIST_PATH) },
];
