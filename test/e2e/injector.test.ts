// The injector end to end against the REAL kube-apiserver v1.20.2 (and its controller manager):
// `agentgate injector` runs locally over HTTPS, registered with the reference
// injector/mutatingwebhookconfiguration.yaml (its selectors, failurePolicy Fail and
// reinvocationPolicy IfNeeded untouched; only clientConfig is pointed at 127.0.0.1, because
// this control plane has no Service network). Pods and Deployments are created through the
// API and the stored objects are inspected: that is what the admission chain really produced.
//
// Kubernetes 1.20 has no native sidecars, so the injector runs with `nativeSidecars: false`
// and this suite covers the classic-sidecar mode end to end. The native mode is covered by the
// injector's golden files and schema validation (test/injector), not here: a 1.20 API server
// would silently drop a container's `restartPolicy`, which proves nothing about native mode.
//
// The one double here is the "late" webhook, a minimal second mutating webhook (clearly a
// test double, defined below) that adds a container after ours so the API server must
// reinvoke ours.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';
import { Agent, request } from 'undici';
import { freePort } from '../support/ports.js';
import { makeServingCert } from '../support/kube-pki.js';
import { sharedKubeCluster, stopSharedKubeCluster, type KubeCluster } from '../support/kube-cluster.js';

after(stopSharedKubeCluster);

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const REFERENCE_MWC = path.join(ROOT, 'injector', 'mutatingwebhookconfiguration.yaml');
const SA_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';
const SIDECAR = 'agentgate-proxy';
const IDENTITY = 'agentgate-identity';
const LATE_LABEL = 'e2e.agentgate.dev/late-webhook';
const KUBECTL_NEWEST = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';

const NS_PLAIN = 'e2e-inject-plain';
const NS_OPTED_IN = 'e2e-inject-namespace';
// 1.20 namespaces have no kubernetes.io/metadata.name label (1.21+): the reference config's
// documented fallback for older clusters is labeling the injector's namespace disabled.
const NS_INJECTOR = 'agentgate-system';

type Pod = k8s.V1Pod;

class Injector {
  child?: ChildProcess;
  stderr = '';
  constructor(readonly port: number, readonly args: string[], readonly caPem: string) {}

  async start(): Promise<void> {
    this.stderr = '';
    const child = spawn(process.execPath, [CLI, 'injector', ...this.args, '--listen', `127.0.0.1:${this.port}`, '--metrics', 'off'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const dispatcher = new Agent({ connect: { ca: this.caPem } });
    const deadline = Date.now() + 20_000;
    try {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`agentgate injector exited with ${child.exitCode}: ${this.stderr}`);
        try {
          const res = await request(`https://127.0.0.1:${this.port}/readyz`, { dispatcher });
          await res.body.text();
          if (res.statusCode === 200) return;
        } catch { /* not listening yet */ }
        if (Date.now() > deadline) throw new Error(`agentgate injector not ready after 20 s: ${this.stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await dispatcher.close();
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

/**
 * TEST DOUBLE of a third-party mutating webhook: adds a container `late-comer` (without any
 * service-account mount) to pods labeled LATE_LABEL=add. Its configuration sorts after ours,
 * so the API server calls it after the injector and must then reinvoke the injector.
 */
async function startLateWebhook(certFile: string, keyFile: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = https.createServer({ cert: await readFile(certFile), key: await readFile(keyFile) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const review = JSON.parse(Buffer.concat(chunks).toString()) as { request: { uid: string; object: Pod } };
      const pod = review.request.object;
      const response: Record<string, unknown> = { uid: review.request.uid, allowed: true };
      if (!pod.spec!.containers.some((c) => c.name === 'late-comer')) {
        const patch = [{ op: 'add', path: '/spec/containers/-', value: { name: 'late-comer', image: 'busybox:1.36', command: ['sleep', '3600'] } }];
        response.patchType = 'JSONPatch';
        response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
      }
      const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return { port, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

let kubeCacheDir = os.tmpdir(); // set to the suite's temp dir in before()

function run(bin: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(bin, args, { timeout: 30_000, env: { ...process.env, HOME: kubeCacheDir, KUBECACHEDIR: path.join(kubeCacheDir, 'kubecache') } }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    child.stdin!.end(input ?? '');
  });
}

function podBody(name: string, labels: Record<string, string> = {}, extra: Partial<k8s.V1PodSpec> = {}): Pod {
  return {
    metadata: { name, labels },
    spec: { containers: [{ name: 'agent', image: 'python:3.12-slim', command: ['sleep', 'infinity'] }], ...extra },
  };
}

/** Names of the pod's volumes that carry a service-account token (the real credential). */
function tokenVolumes(pod: Pod): string[] {
  return (pod.spec!.volumes ?? [])
    .filter((v) => v.projected?.sources?.some((s) => s.serviceAccountToken) || v.secret?.secretName?.includes('-token-'))
    .map((v) => v.name);
}

function appContainers(pod: Pod): k8s.V1Container[] {
  return [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].filter((c) => c.name !== SIDECAR);
}

function envOf(c: k8s.V1Container): Record<string, string | undefined> {
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
}

/** The assertions every injected pod must satisfy, whatever else is in it. */
function expectProtected(pod: Pod): void {
  const spec = pod.spec!;
  expect(spec.containers[0]!.name, 'the classic sidecar is the first container').to.equal(SIDECAR);
  expect(spec.containers[0]!.lifecycle?.postStart?.exec?.command, 'the classic sidecar holds back the app containers until ready').to.be.an('array').that.is.not.empty;
  expect((spec.initContainers ?? []).map((c) => c.name)).to.not.include(SIDECAR);
  expect(pod.metadata!.annotations).to.have.property('agentgate.dev/status');
  const tokens = tokenVolumes(pod);
  expect(tokens, 'the API server added its projected token volume').to.have.length.greaterThan(0);
  for (const c of appContainers(pod)) {
    const mounts = c.volumeMounts ?? [];
    expect(mounts.filter((m) => tokens.includes(m.name)), `${c.name} mounts no real-token volume`).to.deep.equal([]);
    expect(mounts.filter((m) => m.mountPath === SA_PATH), `${c.name} gets the identity volume at the service-account path`).to.deep.equal([
      { name: IDENTITY, mountPath: SA_PATH, readOnly: true },
    ]);
    expect(envOf(c), `${c.name} talks to the sidecar`).to.include({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '15443', KUBERNETES_SERVICE_PORT_HTTPS: '15443' });
  }
  const sidecarMounts = spec.containers[0]!.volumeMounts ?? [];
  // Where the sidecar mounts it is the injector's choice; that it has it is the contract.
  expect(sidecarMounts.some((m) => tokens.includes(m.name) && m.readOnly), 'the sidecar alone keeps the real token').to.equal(true);
  expect(spec.volumes!.find((v) => v.name === IDENTITY)?.emptyDir?.medium).to.equal('Memory');
}

async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: number; body?: string };
    if (typeof e.code !== 'number' || typeof e.body !== 'string') throw err;
    return { code: e.code, message: (JSON.parse(e.body) as { message: string }).message };
  }
  throw new Error('expected the API server to refuse the request');
}

describe('injector e2e on the REAL kube-apiserver v1.20.2 (classic-sidecar mode)', function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let admission: k8s.AdmissionregistrationV1Api;
  let dir: string;
  let configFile: string;
  let injector: Injector;
  let late: { port: number; close(): Promise<void> } | undefined;

  before(async function () {
    this.timeout(60 * 60_000); // the first run on a machine builds the control plane
    cluster = await sharedKubeCluster();
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    apps = cluster.kubeConfig.makeApiClient(k8s.AppsV1Api);
    admission = cluster.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
    dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-e2e-injector-'));
    kubeCacheDir = dir;

    const cert = await makeServingCert(cluster.pki, path.join(dir, 'tls'), 'agentgate-injector');
    configFile = path.join(dir, 'injector.yaml');
    await writeFile(configFile, [
      'image: ghcr.io/agentgate/agentgate:e2e',
      'nativeSidecars: false',
      'connections: {payments: {secret: payments-db-credentials, database: payments}}',
      'allowedSecrets: [openai-api-key]',
      `optOut: {serviceAccounts: [${NS_OPTED_IN}/exporter]}`,
      '',
    ].join('\n'));
    injector = new Injector(await freePort(), ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--config', configFile], cluster.caPem);
    await injector.start();

    await cluster.createNamespace(NS_PLAIN);
    await cluster.createNamespace(NS_OPTED_IN, { 'agentgate.dev/inject': 'enabled' });
    await cluster.createNamespace(NS_INJECTOR, { 'agentgate.dev/inject': 'disabled' });
    await cluster.createServiceAccount(NS_OPTED_IN, 'exporter');

    // The reference configuration, as shipped, with only the client config made local.
    const mwc = YAML.parse(await readFile(REFERENCE_MWC, 'utf8')) as k8s.V1MutatingWebhookConfiguration;
    for (const w of mwc.webhooks!) {
      w.clientConfig = { url: `https://127.0.0.1:${injector.port}/mutate`, caBundle: Buffer.from(cluster.caPem).toString('base64') };
    }
    await admission.createMutatingWebhookConfiguration({ body: mwc });

    late = await startLateWebhook(cert.certFile, cert.keyFile);
    await admission.createMutatingWebhookConfiguration({
      body: {
        metadata: { name: 'zz-e2e-late-container' },
        webhooks: [{
          name: 'late.e2e.agentgate.dev',
          admissionReviewVersions: ['v1'],
          clientConfig: { url: `https://127.0.0.1:${late.port}/`, caBundle: Buffer.from(cluster.caPem).toString('base64') },
          rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
          objectSelector: { matchLabels: { [LATE_LABEL]: 'add' } },
          sideEffects: 'None',
          failurePolicy: 'Fail',
          reinvocationPolicy: 'Never',
        }],
      },
    });

    // The API server picks up webhook configurations from an informer: wait until a dry-run
    // pod comes back injected instead of guessing a delay.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const probe = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('probe', { 'agentgate.dev/inject': 'enabled' }), dryRun: 'All' });
      if (probe.spec!.containers[0]!.name === SIDECAR) break;
      if (Date.now() > deadline) throw new Error('the API server did not start calling the injector within 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  after(async function () {
    await injector?.stop();
    await late?.close();
    if (cluster) {
      for (const name of ['agentgate-injector', 'zz-e2e-late-container']) {
        await admission.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('injects a Pod labeled agentgate.dev/inject=enabled: classic sidecar first, no real token in the app container', async function () {
    const pod = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('labeled', { 'agentgate.dev/inject': 'enabled' }) });
    expect(pod.spec!.containers.map((c) => c.name)).to.deep.equal([SIDECAR, 'agent']);
    expectProtected(pod);
    // The API server accepted the sidecar's own projected token for the approval service.
    const approval = pod.spec!.volumes!.find((v) => v.name === 'agentgate-approval-token');
    expect(approval?.projected?.sources?.find((src) => src.serviceAccountToken)?.serviceAccountToken?.audience).to.equal('agentgate');
  });

  it('stores what it answered: the pod read back from etcd is the injected one', async function () {
    const pod = await core.readNamespacedPod({ name: 'labeled', namespace: NS_PLAIN });
    expectProtected(pod);
    expect(pod.status?.phase).to.equal('Pending'); // no kubelet in this control plane
  });

  it('leaves no real-token mount after the ServiceAccount admission step runs again, init containers included', async function () {
    const pod = await core.createNamespacedPod({
      namespace: NS_PLAIN,
      body: podBody('with-init', { 'agentgate.dev/inject': 'enabled' }, {
        initContainers: [{ name: 'migrate', image: 'python:3.12-slim', command: ['true'] }],
        containers: [
          { name: 'agent', image: 'python:3.12-slim' },
          { name: 'helper', image: 'busybox:1.36' },
        ],
      }),
    });
    expect(pod.spec!.initContainers!.map((c) => c.name)).to.deep.equal(['migrate']);
    expect(pod.spec!.containers.map((c) => c.name)).to.deep.equal([SIDECAR, 'agent', 'helper']);
    expectProtected(pod);
  });

  it('replaces a volume the pod mounted at the service-account path itself', async function () {
    const pod = await core.createNamespacedPod({
      namespace: NS_PLAIN,
      body: podBody('own-token', { 'agentgate.dev/inject': 'enabled' }, {
        volumes: [{ name: 'my-token', projected: { sources: [{ serviceAccountToken: { path: 'token', audience: 'vault' } }] } }],
        containers: [{ name: 'agent', image: 'python:3.12-slim', volumeMounts: [{ name: 'my-token', mountPath: SA_PATH }] }],
      }),
    });
    expectProtected(pod);
  });

  it('injects a pod in a namespace labeled agentgate.dev/inject=enabled (the namespace entry)', async function () {
    const pod = await core.createNamespacedPod({ namespace: NS_OPTED_IN, body: podBody('by-namespace') });
    expectProtected(pod);
  });

  it('refuses a pod labeled agentgate.dev/inject=disabled in an opted-in namespace when its service account may not opt out', async function () {
    const { code, message } = await refusal(core.createNamespacedPod({ namespace: NS_OPTED_IN, body: podBody('opted-out', { 'agentgate.dev/inject': 'disabled' }) }));
    expect(code).to.equal(403);
    expect(message).to.equal(
      `admission webhook "namespaces.inject.agentgate.dev" denied the request: agentgate refuses pod ${NS_OPTED_IN}/opted-out: it is labeled agentgate.dev/inject=disabled in a namespace that is opted in, but only the namespaces and service accounts in the injector config's optOut may opt out, and neither namespace '${NS_OPTED_IN}' nor service account '${NS_OPTED_IN}/default' is listed`,
    );
  });

  it('leaves a pod labeled disabled untouched in an opted-in namespace when the config lets its service account opt out', async function () {
    const pod = await core.createNamespacedPod({ namespace: NS_OPTED_IN, body: podBody('exporter', { 'agentgate.dev/inject': 'disabled' }, { serviceAccountName: 'exporter' }) });
    expect(pod.spec!.containers.map((c) => c.name)).to.deep.equal(['agent']);
    expect(pod.metadata!.annotations ?? {}).to.not.have.property('agentgate.dev/status');
  });

  it('refuses a malformed label value through both webhook entries, as agentgate inject does', async function () {
    for (const [ns, entry] of [[NS_PLAIN, 'pods'], [NS_OPTED_IN, 'namespaces']] as const) {
      const { code, message } = await refusal(core.createNamespacedPod({ namespace: ns, body: podBody('mixed-case', { 'agentgate.dev/inject': 'Enabled' }) }));
      expect(code).to.equal(403);
      expect(message).to.equal(
        `admission webhook "${entry}.inject.agentgate.dev" denied the request: agentgate refuses pod ${ns}/mixed-case: label agentgate.dev/inject: expected "enabled" or "disabled", got 'Enabled' (values are case-sensitive, as the webhook's selectors match them)`,
      );
    }
    const manifest = path.join(dir, 'mixed-case.yaml');
    await writeFile(manifest, YAML.stringify({ apiVersion: 'v1', kind: 'Pod', ...podBody('mixed-case', { 'agentgate.dev/inject': 'Enabled' }) }));
    const offline = await run(process.execPath, [CLI, 'inject', '-f', manifest, '--config', configFile]);
    expect(offline.code).to.equal(1);
    expect(offline.stderr).to.include(`label agentgate.dev/inject: expected "enabled" or "disabled", got 'Enabled'`);
  });

  it('refuses hostPID, privileged containers and a hostPath of the kubelet\'s directory, through the API server', async function () {
    const cases: [string, Partial<k8s.V1PodSpec>, RegExp][] = [
      ['host-pid', { hostPID: true }, /agentgate refuses pod e2e-inject-plain\/host-pid: it sets hostPID/],
      ['privileged', { containers: [{ name: 'agent', image: 'python:3.12-slim', securityContext: { privileged: true } }] }, /container 'agent' is privileged/],
      ['kubelet', { volumes: [{ name: 'kubelet', hostPath: { path: '/var/lib/kubelet' } }] }, /volume 'kubelet': hostPath '\/var\/lib\/kubelet' reaches the kubelet's directory/],
    ];
    for (const [name, spec, re] of cases) {
      const { code, message } = await refusal(core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody(name, { 'agentgate.dev/inject': 'enabled' }, spec) }));
      expect(code, name).to.equal(403);
      expect(message, name).to.match(re);
    }
  });

  it('refuses an agent container that reads the connection\'s Secret or a Secret not on the allow-list, and admits an allowed one', async function () {
    const env = (secret: string) => [{ name: 'S', valueFrom: { secretKeyRef: { name: secret, key: 'k' } } }];
    const conn = await refusal(core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('conn-secret', { 'agentgate.dev/inject': 'enabled' }, { containers: [{ name: 'agent', image: 'python:3.12-slim', env: env('payments-db-credentials') }] }) }));
    expect(conn.message).to.match(/container 'agent' \(env S\) references Secret 'payments-db-credentials', the database credentials of connection 'payments'/);
    const token = await refusal(core.createNamespacedPod({
      namespace: NS_PLAIN,
      body: podBody('token-secret', { 'agentgate.dev/inject': 'enabled' }, {
        volumes: [{ name: 'robot', secret: { secretName: 'agent-robot' } }],
        containers: [{ name: 'agent', image: 'python:3.12-slim', volumeMounts: [{ name: 'robot', mountPath: '/robot' }] }],
      }),
    }));
    expect(token.message).to.match(/container 'agent' \(volume 'robot'\) references Secret 'agent-robot', which is not in the injector config's allowedSecrets/);
    const ok = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('allowed-secret', { 'agentgate.dev/inject': 'enabled' }, { containers: [{ name: 'agent', image: 'python:3.12-slim', env: env('openai-api-key') }] }) });
    expectProtected(ok);
  });

  it('leaves an unlabeled pod untouched: it keeps the API server\'s own token mount', async function () {
    const pod = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('unlabeled') });
    expect(pod.spec!.containers.map((c) => c.name)).to.deep.equal(['agent']);
    expect(pod.metadata!.annotations ?? {}).to.not.have.property('agentgate.dev/status');
    const [token] = tokenVolumes(pod);
    expect(token).to.match(/^kube-api-access-[a-z0-9]{5}$/);
    expect(pod.spec!.containers[0]!.volumeMounts).to.deep.equal([{ name: token, mountPath: SA_PATH, readOnly: true }]);
    expect(pod.spec!.containers[0]!.env).to.equal(undefined);
  });

  it('injects the pods of a Deployment, created by the real controller manager through the admission chain', async function () {
    const labels = { app: 'agent-deploy', 'agentgate.dev/inject': 'enabled' };
    await apps.createNamespacedDeployment({
      namespace: NS_PLAIN,
      body: {
        metadata: { name: 'agent-deploy' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'agent-deploy' } },
          template: { metadata: { labels }, spec: { containers: [{ name: 'agent', image: 'python:3.12-slim' }] } },
        },
      },
    });
    const deadline = Date.now() + 90_000;
    let pods: Pod[] = [];
    while (pods.length < 2) {
      if (Date.now() > deadline) throw new Error(`the controller manager created ${pods.length} of 2 pods in 90 s`);
      await new Promise((r) => setTimeout(r, 250));
      pods = (await core.listNamespacedPod({ namespace: NS_PLAIN, labelSelector: 'app=agent-deploy' })).items;
    }
    expect(pods.map((p) => p.metadata!.ownerReferences?.[0]?.kind)).to.deep.equal(['ReplicaSet', 'ReplicaSet']);
    for (const p of pods) expectProtected(p);
  });

  it('refuses a pod update that swaps the proxy\'s image, and allows one that changes the agent\'s', async function () {
    const patch = async (ops: unknown[]) => {
      const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
      try {
        const res = await request(`${cluster.server}/api/v1/namespaces/${NS_PLAIN}/pods/labeled`, {
          method: 'PATCH',
          dispatcher,
          headers: { authorization: `Bearer ${cluster.adminToken}`, 'content-type': 'application/json-patch+json' },
          body: JSON.stringify(ops),
        });
        return { status: res.statusCode, body: (await res.body.json()) as { message?: string } };
      } finally {
        await dispatcher.close();
      }
    };
    const swap = await patch([{ op: 'replace', path: '/spec/containers/0/image', value: 'registry.example/token-dumper:1' }]);
    expect(swap.status).to.equal(403);
    expect(swap.body.message).to.equal(
      `admission webhook "pods.inject.agentgate.dev" denied the request: agentgate refuses this update of pod ${NS_PLAIN}/labeled: it changes the image of the agentgate-proxy container (ghcr.io/agentgate/agentgate:e2e → registry.example/token-dumper:1), which holds the pod's real credentials; recreate the pod to change the proxy`,
    );
    const bump = await patch([{ op: 'replace', path: '/spec/containers/1/image', value: 'python:3.13-slim' }]);
    expect(bump.status, bump.body.message).to.equal(200);
  });

  describe('kubectl debug: ephemeral containers on 1.20 (alpha gate EphemeralContainers, the EphemeralContainers object)', function () {
    // 1.20 takes and returns an EphemeralContainers object at the subresource; kubectl ≥ 1.22
    // sends a Pod there, which this server cannot read, so the requests are made directly.
    // The Pod-shaped requests of ≥ 1.22 servers are covered by test/injector/ephemeral.test.ts.
    const subresource = async (method: 'GET' | 'PUT', ns: string, name: string, body?: unknown) => {
      const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
      try {
        const res = await request(`${cluster.server}/api/v1/namespaces/${ns}/pods/${name}/ephemeralcontainers`, {
          method,
          dispatcher,
          headers: { authorization: `Bearer ${cluster.adminToken}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: res.statusCode, body: (await res.body.json()) as { message?: string; ephemeralContainers?: k8s.V1EphemeralContainer[] } };
      } finally {
        await dispatcher.close();
      }
    };
    const debugger_ = (mounts: k8s.V1VolumeMount[] = []) => ({
      name: 'debugger', image: 'busybox:1.36', command: ['sh'], stdin: true, tty: true, targetContainerName: 'agent', terminationMessagePolicy: 'File',
      ...(mounts.length ? { volumeMounts: mounts } : {}),
    });

    it('refuses a debug container that mounts the injected pod\'s real token volume', async function () {
      const pod = await core.createNamespacedPod({ namespace: NS_OPTED_IN, body: podBody('debug-me') });
      const [token] = tokenVolumes(pod);
      const current = await subresource('GET', NS_OPTED_IN, 'debug-me');
      expect(current.status).to.equal(200);
      const put = await subresource('PUT', NS_OPTED_IN, 'debug-me', { ...current.body, ephemeralContainers: [debugger_([{ name: token!, mountPath: '/stolen', readOnly: true }])] });
      expect(put.status).to.equal(403);
      expect(put.body.message).to.equal(
        `admission webhook "ephemeralcontainers.inject.agentgate.dev" denied the request: agentgate refuses ephemeral containers for pod ${NS_OPTED_IN}/debug-me: ephemeral container 'debugger' mounts volume '${token}', and this API server (before Kubernetes 1.22) sends the EphemeralContainers object, without the pod's labels or volumes, so agentgate cannot tell whether the pod is an agent or which volumes carry its real token; debug without volumeMounts`,
      );
      const stored = await core.readNamespacedPod({ name: 'debug-me', namespace: NS_OPTED_IN });
      expect(stored.spec!.ephemeralContainers ?? []).to.deep.equal([]);
    });

    it('admits a debug container without volume mounts: it gets no token from the API server', async function () {
      const current = await subresource('GET', NS_OPTED_IN, 'debug-me');
      const put = await subresource('PUT', NS_OPTED_IN, 'debug-me', { ...current.body, ephemeralContainers: [debugger_()] });
      expect(put.status, put.body.message).to.equal(200);
      const stored = await core.readNamespacedPod({ name: 'debug-me', namespace: NS_OPTED_IN });
      expect(stored.spec!.ephemeralContainers!.map((c) => [c.name, c.volumeMounts ?? []])).to.deep.equal([['debugger', []]]);
      expectProtected(stored);
    });

    it('refuses a debug container with volume mounts in any pod the webhook covers: the 1.20 request does not say whose pod it is', async function () {
      const pod = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('not-an-agent') });
      const [token] = tokenVolumes(pod);
      const current = await subresource('GET', NS_PLAIN, 'not-an-agent');
      const put = await subresource('PUT', NS_PLAIN, 'not-an-agent', { ...current.body, ephemeralContainers: [debugger_([{ name: token!, mountPath: '/token' }])] });
      expect(put.status).to.equal(403);
      expect(put.body.message).to.match(/agentgate refuses ephemeral containers for pod e2e-inject-plain\/not-an-agent: ephemeral container 'debugger' mounts volume/);
    });
  });

  it('agentgate inject output is accepted by kubectl apply, and its pods pass the webhook again unchanged (one sidecar)', async function () {
    const manifest = path.join(dir, 'offline.yaml');
    await writeFile(manifest, YAML.stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'offline-injected', namespace: NS_PLAIN },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'offline-injected' } },
        template: {
          metadata: { labels: { app: 'offline-injected', 'agentgate.dev/inject': 'enabled' } },
          spec: { containers: [{ name: 'agent', image: 'python:3.12-slim' }] },
        },
      },
    }));
    const injected = await run(process.execPath, [CLI, 'inject', '-f', manifest, '--config', configFile]);
    expect(injected.code, injected.stderr).to.equal(0);
    const applied = await run(KUBECTL_NEWEST, ['--kubeconfig', cluster.kubeconfigPath, 'apply', '-f', '-'], injected.stdout);
    expect(applied.stdout.trim(), applied.stderr).to.equal('deployment.apps/offline-injected created');
    const template = (await apps.readNamespacedDeployment({ name: 'offline-injected', namespace: NS_PLAIN })).spec!.template;
    expect(template.spec!.containers.map((c) => c.name)).to.deep.equal([SIDECAR, 'agent']);

    const deadline = Date.now() + 90_000;
    let pods: Pod[] = [];
    while (pods.length < 1) {
      if (Date.now() > deadline) throw new Error('the controller manager created no pod in 90 s');
      await new Promise((r) => setTimeout(r, 250));
      pods = (await core.listNamespacedPod({ namespace: NS_PLAIN, labelSelector: 'app=offline-injected' })).items;
    }
    expect(pods[0]!.spec!.containers.map((c) => c.name)).to.deep.equal([SIDECAR, 'agent']);
    expectProtected(pods[0]!);
  });

  it('rewrites a container that a later webhook added, when the API server reinvokes it (reinvocationPolicy IfNeeded)', async function () {
    const pod = await core.createNamespacedPod({
      namespace: NS_PLAIN,
      body: podBody('reinvoked', { 'agentgate.dev/inject': 'enabled', [LATE_LABEL]: 'add' }),
    });
    expect(pod.spec!.containers.map((c) => c.name)).to.deep.equal([SIDECAR, 'agent', 'late-comer']);
    expectProtected(pod);
  });

  it('answers a dry-run create with the injected pod and stores nothing', async function () {
    const pod = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('dry', { 'agentgate.dev/inject': 'enabled' }), dryRun: 'All' });
    expectProtected(pod);
    const { code } = await refusal(core.readNamespacedPod({ name: 'dry', namespace: NS_PLAIN }));
    expect(code).to.equal(404);
  });

  it('refuses an opted-in hostNetwork pod with the injector\'s reason, through the API server', async function () {
    const { code, message } = await refusal(core.createNamespacedPod({
      namespace: NS_PLAIN,
      body: podBody('host-net', { 'agentgate.dev/inject': 'enabled' }, { hostNetwork: true }),
    }));
    expect(code).to.equal(403);
    expect(message).to.match(/^admission webhook "pods\.inject\.agentgate\.dev" denied the request: agentgate refuses .*hostNetwork/);
  });

  it('refuses an opted-in pod while the webhook is down (failurePolicy Fail), and still admits pods that did not opt in', async function () {
    await injector.stop();
    try {
      const labeled = await refusal(core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('while-down', { 'agentgate.dev/inject': 'enabled' }) }));
      expect(labeled.code).to.equal(500);
      expect(labeled.message).to.match(/^Internal error occurred: failed calling webhook "pods\.inject\.agentgate\.dev": Post "https:\/\/127\.0\.0\.1:\d+\/mutate\?timeout=5s": dial tcp 127\.0\.0\.1:\d+: connect: connection refused$/);
      const byNamespace = await refusal(core.createNamespacedPod({ namespace: NS_OPTED_IN, body: podBody('while-down') }));
      expect(byNamespace.message).to.match(/failed calling webhook "namespaces\.inject\.agentgate\.dev"/);

      const plain = await core.createNamespacedPod({ namespace: NS_PLAIN, body: podBody('plain-while-down') });
      expect(plain.spec!.containers.map((c) => c.name)).to.deep.equal(['agent']);
      // The injector's own namespace is excluded, so a fail-closed injector cannot deadlock itself.
      const own = await core.createNamespacedPod({ namespace: NS_INJECTOR, body: podBody('injector-replica', { 'agentgate.dev/inject': 'enabled' }) });
      expect(own.spec!.containers.map((c) => c.name)).to.deep.equal(['agent']);
    } finally {
      await injector.start();
    }
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && injector?.stderr) console.log(`      injector stderr (last 4 kB):\n${injector.stderr.slice(-4000)}`);
  });
});
