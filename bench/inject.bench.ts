// inject-admission: the webhook's /mutate over HTTPS with keep-alive, driven by
// autocannon at a fixed 200 admissions/s (target: p99 < 5 ms) and at the maximum,
// plus the webhook process's RSS. The direct path is an HTTPS server in its own
// Node process with the same certificate that reads the same request body and
// answers a precomputed AdmissionReview: the difference is what the injector's
// parse → mutate → diff → encode costs.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Agent, Pool, request } from 'undici';
import type { Benchmark, BenchResult } from './types.js';
import { freePort } from '../test/support/ports.js';
import { reviewAdmission } from '../injector/admission.js';
import { DEFAULT_CONFIG } from '../injector/config.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../cli/main.js');
const DURATION = Number(process.env.BENCH_DURATION ?? 10);

/** A pod as the API server sends it: defaulted, with the kube-api-access volume. */
function review(): string {
  const mount = { name: 'kube-api-access-x7k2p', readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' };
  const container = (name: string) => ({
    name,
    image: `registry.example/${name}:1`,
    env: [{ name: 'LOG_LEVEL', value: 'info' }],
    resources: {},
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    imagePullPolicy: 'IfNotPresent',
    volumeMounts: [mount],
  });
  return JSON.stringify({
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: '',
      namespace: 'agents',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
      object: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { generateName: 'agent-7d9f8b6c5-', namespace: 'agents', labels: { app: 'agent', 'agentgate.dev/inject': 'enabled' } },
        spec: {
          initContainers: [container('fetch-model')],
          containers: [container('agent'), container('tools')],
          dnsPolicy: 'ClusterFirst',
          restartPolicy: 'Always',
          schedulerName: 'default-scheduler',
          securityContext: {},
          serviceAccountName: 'agent',
          terminationGracePeriodSeconds: 30,
          volumes: [
            {
              name: 'kube-api-access-x7k2p',
              projected: {
                defaultMode: 420,
                sources: [
                  { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
                  { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                  { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
                ],
              },
            },
          ],
        },
      },
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  });
}

// The direct path: same TLS, same body read, a fixed answer.
const DIRECT_SERVER = `
import https from 'node:https';
import { readFileSync } from 'node:fs';
const [cert, key, port, answerFile] = process.argv.slice(1);
const answer = readFileSync(answerFile);
https.createServer({ cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.2', keepAlive: true }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try { JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {}
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
    res.end(answer);
  });
}).listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function waitHealthy(url: string, ca: string): Promise<void> {
  const agent = new Agent({ connect: { ca } });
  try {
    for (let i = 0; i < 200; i++) {
      try {
        const r = await request(url.replace(/\/mutate$/, '/healthz'), { dispatcher: agent });
        await r.body.text();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`${url} did not come up`);
  } finally {
    await agent.close();
  }
}

interface Run {
  rps: number;
  p99: number;
  p50: number;
  errors: number;
}

/** At the maximum: autocannon, 10 keep-alive connections, closed loop. */
async function driveMax(url: string, body: string): Promise<Run> {
  const r = await autocannon({ url, method: 'POST', body, headers: { 'content-type': 'application/json' }, connections: 10, pipelining: 1, duration: DURATION });
  return { rps: r.requests.average, p99: r.latency.p99, p50: r.latency.p50, errors: r.errors + r.timeouts + r.non2xx };
}

/**
 * At a fixed rate: open loop, one request every 1/rate s over a keep-alive pool,
 * latency counted from the scheduled send time (no coordinated omission), in µs.
 * autocannon's overallRate releases each connection's share at the start of every
 * second, a burst that measures its own queueing rather than the server's latency.
 */
async function driveFixed(url: string, ca: string, body: string, rate: number): Promise<Run> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 10, pipelining: 1, connect: { ca } });
  // Open every pooled connection (TLS handshakes) before the clock starts.
  await Promise.all(Array.from({ length: 20 }, () => pool.request({ path: u.pathname, method: 'POST', body, headers: { 'content-type': 'application/json' } }).then((r) => r.body.text())));
  const n = rate * DURATION;
  const lat: number[] = [];
  let errors = 0;
  const start = performance.now() + 20;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(
      pool
        .request({ path: u.pathname, method: 'POST', body, headers: { 'content-type': 'application/json' } })
        .then(async (res) => {
          await res.body.text();
          if (res.statusCode !== 200) errors++;
          lat.push(performance.now() - due);
        })
        .catch(() => {
          errors++;
        }),
    );
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN;
  return { rps: lat.length / elapsed, p99: pct(99), p50: pct(50), errors };
}

function stop(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

export const benchmarks: Benchmark[] = [
  {
    name: 'inject-admission',
    async run(): Promise<BenchResult[]> {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-inject-bench-'));
      const procs: ChildProcess[] = [];
      try {
        const certFile = path.join(dir, 'tls.crt');
        const keyFile = path.join(dir, 'tls.key');
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=agentgate-injector', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
        const ca = readFileSync(certFile, 'utf8');
        const body = review();
        const answer = reviewAdmission(body, DEFAULT_CONFIG);
        if (answer.result !== 'injected') throw new Error(`benchmark review was not injected: ${answer.reason}`);
        const answerFile = path.join(dir, 'answer.json');
        writeFileSync(answerFile, JSON.stringify(answer.review));

        const [pInj, pDir] = [await freePort(), await freePort()];
        const injector = spawn(process.execPath, [MAIN, 'injector', '--tls-cert', certFile, '--tls-key', keyFile, '--listen', `127.0.0.1:${pInj}`, '--metrics', 'off'], {
          stdio: ['ignore', 'ignore', 'inherit'],
          env: { ...process.env, AGENTGATE_LOG_LEVEL: 'warn' },
        });
        const direct = spawn(process.execPath, ['--input-type=module', '-e', DIRECT_SERVER, certFile, keyFile, String(pDir), answerFile], { stdio: ['ignore', 'ignore', 'inherit'] });
        procs.push(injector, direct);
        const injUrl = `https://127.0.0.1:${pInj}/mutate`;
        const dirUrl = `https://127.0.0.1:${pDir}/mutate`;
        await Promise.all([waitHealthy(injUrl, ca), waitHealthy(dirUrl, ca)]);

        // Warm up the JIT on both sides before measuring.
        await autocannon({ url: injUrl, method: 'POST', body, connections: 4, duration: 2 });
        await autocannon({ url: dirUrl, method: 'POST', body, connections: 4, duration: 2 });

        const fixedDirect = await driveFixed(dirUrl, ca, body, 200);
        const fixedInj = await driveFixed(injUrl, ca, body, 200);
        const maxDirect = await driveMax(dirUrl, body);
        const maxInj = await driveMax(injUrl, body);
        const rssInj = rssMiB(injector.pid!);
        const rssDir = rssMiB(direct.pid!);
        const errs = fixedInj.errors + maxInj.errors;
        const note = errs ? `${errs} errors/non-2xx` : undefined;
        return [
          { bench: 'inject-admission-200rps-p99', value: fixedInj.p99, unit: 'ms', direct: fixedDirect.p99, ratio: fixedInj.p99 / Math.max(fixedDirect.p99, 0.001), note: note ?? `target < 5 ms; p50 ${fixedInj.p50.toFixed(2)} ms, open loop` },
          { bench: 'inject-admission-200rps-rate', value: fixedInj.rps, unit: 'admissions/s', direct: fixedDirect.rps, ratio: fixedInj.rps / fixedDirect.rps },
          { bench: 'inject-admission-max-rate', value: maxInj.rps, unit: 'admissions/s', direct: maxDirect.rps, ratio: maxInj.rps / maxDirect.rps, note },
          { bench: 'inject-admission-max-p99', value: maxInj.p99, unit: 'ms', direct: maxDirect.p99, ratio: maxInj.p99 / Math.max(maxDirect.p99, 0.001), note: '10 connections' },
          { bench: 'inject-admission-rss', value: rssInj, unit: 'MiB', direct: rssDir, ratio: rssInj / rssDir, note: 'after the runs' },
        ];
      } finally {
        await Promise.all(procs.map(stop));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
