// A REAL Kubernetes control plane for end-to-end tests: etcd (Debian's etcd-server 3.4),
// kube-apiserver and kube-controller-manager v1.20.2 built from Debian's `kubernetes` source
// package by build-kube.sh (once per machine, cached outside the checkout). Not a double.
//
// Each start gets free loopback ports, a fresh CA and certificates, a fresh service-account
// key pair and issuer, a static token file, fresh etcd data, RBAC, the BoundServiceAccountTokenVolume
// feature gate (pods get the projected `kube-api-access-*` volume, as modern clusters do) and the
// ServiceAccount, MutatingAdmissionWebhook and ValidatingAdmissionWebhook admission plugins.
// There is no kubelet: pods stay Pending, their stored specs are what tests look at.
//
// Nothing may outlive the test run: stop() terminates the three processes, an exit handler
// kills them if the runner exits first, and a start reaps control planes whose runner died
// (SIGKILL leaves no chance to clean up) by the pid files in their temp dirs.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { freePort } from './ports.js';
import { makeKubePki, type KubePki } from './kube-pki.js';

const execFileP = promisify(execFile);

/** Repository root, from dist/test/support or test/support. */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('kube-cluster: cannot find the repository root');
    dir = up;
  }
  return dir;
}

export const BUILD_SCRIPT = path.join(repoRoot(), 'test', 'support', 'build-kube.sh');
const ETCD = process.env.AGENTGATE_ETCD ?? '/usr/bin/etcd';
const STALE_PREFIX = 'agentgate-e2e-kube-';
const SETPRIV = '/usr/bin/setpriv';

export interface KubeBinaries {
  dir: string;
  apiserver: string;
  controllerManager: string;
  etcd: string;
}

function binariesIn(dir: string): KubeBinaries {
  return {
    dir,
    apiserver: path.join(dir, 'bin', 'kube-apiserver'),
    controllerManager: path.join(dir, 'bin', 'kube-controller-manager'),
    etcd: ETCD,
  };
}

/** The cached binaries, or null when build-kube.sh has not run on this machine (no network, no build). */
export async function locateKubeBinaries(): Promise<KubeBinaries | null> {
  if (process.env.AGENTGATE_KUBE_DIR) {
    const bins = binariesIn(process.env.AGENTGATE_KUBE_DIR);
    for (const f of [bins.apiserver, bins.controllerManager, bins.etcd]) {
      if (!existsSync(f)) throw new Error(`AGENTGATE_KUBE_DIR=${process.env.AGENTGATE_KUBE_DIR}: ${f} does not exist`);
    }
    return bins;
  }
  try {
    const { stdout } = await execFileP('bash', [BUILD_SCRIPT, '--dir']);
    const dir = stdout.trim();
    return dir && existsSync(ETCD) ? binariesIn(dir) : null;
  } catch {
    return null;
  }
}

/** The cached binaries, building them first when missing (minutes, once per machine; needs root for apt). */
export async function ensureKubeBinaries(): Promise<KubeBinaries> {
  const found = await locateKubeBinaries();
  if (found) return found;
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${BUILD_SCRIPT} exited with ${code}`))));
  });
  const built = await locateKubeBinaries();
  if (!built) throw new Error(`${BUILD_SCRIPT} finished but left no binaries`);
  return built;
}

export interface ProcessRss {
  etcd: number;
  apiserver: number;
  controllerManager: number;
}

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  server: string;
  /** Server version as reported by /version, e.g. v1.20.2. */
  version: string;
  /** The service-account token issuer (`iss` of every token the server signs). */
  issuer: string;
  caFile: string;
  caPem: string;
  /** Static bearer token of a system:masters user. */
  adminToken: string;
  /** kubeconfig for the admin user (token auth), for kubectl --kubeconfig. */
  kubeconfigPath: string;
  /** The API server's audit log (set when started with `auditLevel`). */
  auditLog?: string;
  /** Admin client configuration for @kubernetes/client-node. */
  kubeConfig: k8s.KubeConfig;
  pki: KubePki;
  dir: string;
  /** Milliseconds from spawning etcd until the API server is ready and `default/default` ServiceAccount exists. */
  startupMs: number;
  rss(): ProcessRss;
  logFile(component: 'etcd' | 'kube-apiserver' | 'kube-controller-manager'): string;
  /** Creates a namespace and waits until the controller manager gave it the `default` ServiceAccount and `kube-root-ca.crt`. */
  createNamespace(name: string, labels?: Record<string, string>): Promise<void>;
  /** Creates a ServiceAccount (and waits for nothing: TokenRequest works at once). */
  createServiceAccount(namespace: string, name: string): Promise<void>;
  /** A real service-account token from the TokenRequest API. */
  requestToken(namespace: string, serviceAccount: string, opts?: { audiences?: string[]; expirationSeconds?: number }): Promise<string>;
  /** Writes a kubeconfig that authenticates with `token` against `server` (default: this API server). */
  writeKubeconfig(file: string, opts: { token: string; server?: string; caFile?: string }): Promise<string>;
  stop(): Promise<void>;
}

interface Proc {
  name: 'etcd' | 'kube-apiserver' | 'kube-controller-manager';
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

const live = new Set<Proc>();
/** Temp dirs to remove if the runner exits without stop() (kept ones are not listed). */
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // mocha --exit calls process.exit: 'exit' handlers run synchronously, so only SIGKILL is possible.
  process.on('exit', () => {
    for (const p of live) if (p.child.exitCode === null && p.child.pid) try { process.kill(p.child.pid, 'SIGKILL'); } catch { /* gone */ }
    for (const d of liveDirs) try { rmSync(d, { recursive: true, force: true }); } catch { /* the next start reaps it */ }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const p of live) if (p.child.pid) try { process.kill(p.child.pid, 'SIGKILL'); } catch { /* gone */ }
      process.exit(128 + (os.constants.signals[sig] ?? 1));
    });
  }
}

/** Kills control planes left by a runner that died without cleaning up, and removes their dirs. */
async function reapStale(): Promise<void> {
  const tmp = os.tmpdir();
  for (const entry of readdirSync(tmp)) {
    if (!entry.startsWith(STALE_PREFIX)) continue;
    const dir = path.join(tmp, entry);
    let owner = 0;
    try { owner = Number(readFileSync(path.join(dir, 'owner.pid'), 'utf8')); } catch { continue; }
    if (owner && existsSync(`/proc/${owner}`)) continue;
    let pids: number[] = [];
    try { pids = readFileSync(path.join(dir, 'children.pid'), 'utf8').split('\n').filter(Boolean).map(Number); } catch { /* none */ }
    for (const pid of pids) {
      // Only kill a pid that still runs one of OUR binaries on THIS dir (pids are reused).
      let cmdline = '';
      try { cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
      if (cmdline.includes(dir)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await rm(dir, { recursive: true, force: true });
  }
}

function tail(file: string, lines = 25): string {
  try { return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n'); } catch { return '(no log)'; }
}

function startProcess(name: Proc['name'], bin: string, args: string[], dir: string): Proc {
  const log = path.join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  // setpriv --pdeathsig: the kernel kills the process when the test runner dies, even by SIGKILL.
  const child = existsSync(SETPRIV)
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args], { stdio: ['ignore', fd, fd], cwd: dir })
    : spawn(bin, args, { stdio: ['ignore', fd, fd], cwd: dir });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null)));
    child.once('error', () => resolve(-1));
  });
  const proc: Proc = { name, child, log, exited };
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}

async function waitFor<T>(what: string, procs: Proc[], timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    for (const p of procs) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) while waiting for ${what}; last log lines:\n${tail(p.log)}`);
      }
    }
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${describeError(last)})` : ''}; logs in ${path.dirname(procs[0]!.log)}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** One line for an error, including the API server's Status message when client-node carries one. */
export function describeError(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (typeof e.code === 'number' && e.body !== undefined) {
    let msg: unknown = e.body;
    try { msg = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body).message ?? e.body; } catch { /* not JSON */ }
    return `HTTP ${e.code}: ${String(msg)}`;
  }
  return e.message ?? String(err);
}

function rssOf(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function kubeconfigYaml(server: string, caPem: string, token: string, user: string): string {
  // JSON is valid YAML and needs no serializer here.
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'e2e', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'e2e', context: { cluster: 'e2e', user, namespace: 'default' } }],
    'current-context': 'e2e',
  }, null, 2);
}

async function stopProcess(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const killed = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
  if (!killed) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

export interface KubeClusterOptions {
  /** Extra kube-apiserver flags (e.g. --oidc-*). */
  apiserverFlags?: string[];
  /** Keep the temp dir (logs, etcd data) after stop, for debugging. Also AGENTGATE_KEEP_KUBE=1. */
  keep?: boolean;
  /**
   * Write the API server's own audit log (audit.k8s.io/v1 Events, one JSON per line) at this
   * level for every request; `auditLog` on the cluster names the file.
   */
  auditLevel?: 'Metadata' | 'Request' | 'RequestResponse';
}

export async function startKubeCluster(opts: KubeClusterOptions = {}): Promise<KubeCluster> {
  const bins = await ensureKubeBinaries();
  installExitHook();
  await reapStale();
  const dir = await mkdtemp(path.join(os.tmpdir(), STALE_PREFIX));
  await writeFile(path.join(dir, 'owner.pid'), String(process.pid));
  const keep = opts.keep ?? process.env.AGENTGATE_KEEP_KUBE === '1';
  if (!keep) liveDirs.add(dir);
  const procs: Proc[] = [];
  const recordPids = () => writeFile(path.join(dir, 'children.pid'), procs.map((p) => p.child.pid).join('\n') + '\n');
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Reverse start order: clients of etcd first, so they do not spin on a dead backend.
    for (const p of [...procs].reverse()) await stopProcess(p);
    liveDirs.delete(dir);
    if (!keep) await rm(dir, { recursive: true, force: true });
  };

  try {
    const [pki, etcdClient, etcdPeer, apiPort] = await Promise.all([makeKubePki(dir), freePort(), freePort(), freePort()]);
    const server = `https://127.0.0.1:${apiPort}`;
    const adminToken = randomBytes(24).toString('hex');
    const cmToken = randomBytes(24).toString('hex');
    await writeFile(
      path.join(dir, 'tokens.csv'),
      `${adminToken},agentgate-e2e-admin,uid-admin,"system:masters"\n${cmToken},system:kube-controller-manager,uid-kcm\n`,
      { mode: 0o600 },
    );
    const caPem = await readFile(pki.caFile, 'utf8');
    const auditLog = opts.auditLevel ? path.join(dir, 'kube-apiserver-audit.log') : undefined;
    const auditFlags: string[] = [];
    if (auditLog) {
      const policyFile = path.join(dir, 'audit-policy.yaml');
      await writeFile(policyFile, JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'Policy', omitStages: ['RequestReceived'], rules: [{ level: opts.auditLevel }] }));
      // batch mode off: each event is in the file when the response has been sent.
      auditFlags.push(`--audit-policy-file=${policyFile}`, `--audit-log-path=${auditLog}`, '--audit-log-mode=blocking', '--audit-log-format=json');
    }

    const started = Date.now();
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    procs.push(startProcess('etcd', bins.etcd, [
      '--name=e2e', `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=e2e=http://127.0.0.1:${etcdPeer}`, '--initial-cluster-state=new',
      '--log-level=warn', '--logger=zap',
    ], dir));
    await recordPids();
    await waitFor('etcd /health', procs, 30_000, async () => {
      const res = await request(`${etcdUrl}/health`);
      const body = (await res.body.json()) as { health?: string };
      return body.health === 'true' ? true : undefined;
    });

    procs.push(startProcess('kube-apiserver', bins.apiserver, [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
      '--insecure-port=0', // 1.20 still opens an unauthenticated :8080 unless told not to
      `--tls-cert-file=${pki.serverCertFile}`, `--tls-private-key-file=${pki.serverKeyFile}`,
      `--client-ca-file=${pki.caFile}`,
      `--token-auth-file=${path.join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      `--service-account-key-file=${pki.saPubFile}`,
      `--service-account-signing-key-file=${pki.saKeyFile}`,
      `--service-account-issuer=${server}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      // EphemeralContainers (alpha in 1.20): the injector's `kubectl debug` path is tested against the real server.
      '--feature-gates=BoundServiceAccountTokenVolume=true,EphemeralContainers=true',
      '--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook',
      // The `kubernetes` Endpoints object cannot hold a loopback address; nothing in-cluster needs it here.
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
      ...auditFlags,
      ...(opts.apiserverFlags ?? []),
    ], dir));
    await recordPids();

    const dispatcher = new Agent({ connect: { ca: caPem } });
    try {
      await waitFor('kube-apiserver /readyz', procs, 120_000, async () => {
        const res = await request(`${server}/readyz`, { dispatcher, headers: { authorization: `Bearer ${adminToken}` } });
        await res.body.text();
        return res.statusCode === 200 ? true : undefined;
      });
    } finally {
      await dispatcher.close();
    }

    const cmKubeconfig = path.join(dir, 'controller-manager.kubeconfig');
    await writeFile(cmKubeconfig, kubeconfigYaml(server, caPem, cmToken, 'system:kube-controller-manager'), { mode: 0o600 });
    procs.push(startProcess('kube-controller-manager', bins.controllerManager, [
      `--kubeconfig=${cmKubeconfig}`,
      '--port=0', '--secure-port=0', // no serving: nothing scrapes it, and no fixed ports to collide on
      '--leader-elect=false',
      `--service-account-private-key-file=${pki.saKeyFile}`,
      `--root-ca-file=${pki.caFile}`,
      // Each controller acts as its own kube-system service account, as kubeadm clusters run it:
      // the bootstrap RBAC roles are written for those identities, not for the manager's own user.
      '--use-service-account-credentials=true',
      '--feature-gates=BoundServiceAccountTokenVolume=true',
      '--controllers=*,-csrsigning,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pvc-protection,-pv-protection,-ttl',
      '--v=1',
    ], dir));
    await recordPids();

    const kubeconfigPath = path.join(dir, 'admin.kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(server, caPem, adminToken, 'agentgate-e2e-admin'), { mode: 0o600 });
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api);

    const waitForNamespaceReady = async (namespace: string) => {
      await waitFor(`ServiceAccount ${namespace}/default and ConfigMap kube-root-ca.crt`, procs, 60_000, async () => {
        await core.readNamespacedServiceAccount({ name: 'default', namespace });
        await core.readNamespacedConfigMap({ name: 'kube-root-ca.crt', namespace });
        return true;
      });
    };
    await waitForNamespaceReady('default');
    const startupMs = Date.now() - started;

    const versionInfo = await kubeConfig.makeApiClient(k8s.VersionApi).getCode();

    return {
      server,
      version: versionInfo.gitVersion,
      issuer: server,
      caFile: pki.caFile,
      caPem,
      ...(auditLog ? { auditLog } : {}),
      adminToken,
      kubeconfigPath,
      kubeConfig,
      pki,
      dir,
      startupMs,
      rss: () => ({
        etcd: rssOf(procs[0]?.child.pid),
        apiserver: rssOf(procs[1]?.child.pid),
        controllerManager: rssOf(procs[2]?.child.pid),
      }),
      logFile: (component) => path.join(dir, `${component}.log`),
      async createNamespace(name, labels) {
        await core.createNamespace({ body: { metadata: { name, labels } } });
        await waitForNamespaceReady(name);
      },
      async createServiceAccount(namespace, name) {
        await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
      },
      async requestToken(namespace, serviceAccount, o = {}) {
        const tr = await core.createNamespacedServiceAccountToken({
          name: serviceAccount,
          namespace,
          body: { spec: { audiences: o.audiences ?? [], expirationSeconds: o.expirationSeconds ?? 3600 } },
        });
        if (!tr.status?.token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
        return tr.status.token;
      },
      async writeKubeconfig(file, o) {
        const ca = o.caFile ? await readFile(o.caFile, 'utf8') : caPem;
        await writeFile(file, kubeconfigYaml(o.server ?? server, ca, o.token, 'e2e-user'), { mode: 0o600 });
        return file;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

let shared: Promise<KubeCluster> | undefined;

/** One control plane for the whole test run: the e2e suites share it (each uses its own namespaces). */
export function sharedKubeCluster(): Promise<KubeCluster> {
  shared ??= startKubeCluster().then((c) => {
    const mb = (n: number) => `${Math.round(n / 1048576)} MB`;
    const rss = c.rss();
    process.stdout.write(`      [real kube-apiserver ${c.version} at ${c.server}: ready in ${(c.startupMs / 1000).toFixed(1)} s; RSS apiserver ${mb(rss.apiserver)}, etcd ${mb(rss.etcd)}, controller-manager ${mb(rss.controllerManager)}]\n`);
    return c;
  });
  return shared;
}

export async function stopSharedKubeCluster(): Promise<void> {
  const s = shared;
  shared = undefined;
  if (s) await (await s.catch(() => undefined))?.stop();
}
