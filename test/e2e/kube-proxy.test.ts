// The sidecar's Kubernetes API proxy end to end against the REAL kube-apiserver v1.20.2:
// `agentgate sidecar --config FILE` runs as its own process, exactly as in a pod, and forwards
// upstream with a real service-account token from the TokenRequest API. The agent side is
// real clients only: kubectl (the oldest and the newest on the machine) with a kubeconfig built
// from the identity files the sidecar wrote, and @kubernetes/client-node's loadFromCluster().
// Everything the API server answers (Status errors, RBAC denials, resourceVersions) is its own.
//
// Not covered here, and why: exec/attach/port-forward need a kubelet, which this control
// plane has not (test/sidecar/kubernetes covers them against the API server double);
// approval-required operations wait for the approval service.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import * as k8s from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { freePort } from '../support/ports.js';
import { sharedKubeCluster, stopSharedKubeCluster, type KubeCluster } from '../support/kube-cluster.js';

after(stopSharedKubeCluster);

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const KUBECTL_OLDEST = '/usr/lib/google-cloud-sdk/bin/kubectl.1.27';
const KUBECTL_NEWEST = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';
const NS = 'e2e-proxy';
const SA = 'agent';
const SA_USER = `system:serviceaccount:${NS}:${SA}`;
const SA_PATH = 'var/run/secrets/kubernetes.io/serviceaccount';

/** Visa test PAN (Luhn-valid), stored in the real API server, and what the agent must see instead. */
const PAN = '4111111111111111';
const PAN_MASKED = '************1111';

const POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: e2e-kube-proxy }
spec:
  default: deny
  masking: { pan: last4, secrets: mask }
  rules:
    - name: read-workloads
      subjects: ["${SA_USER}"]
      kubernetes: { verbs: [get, list, watch], resources: [pods, configmaps, secrets, namespaces], namespaces: ["*"] }
      action: allow
    - name: edit-configmaps
      subjects: ["${SA_USER}"]
      kubernetes: { verbs: [create, update, patch], resources: [configmaps], namespaces: [${NS}] }
      action: allow
    - name: no-deletes
      description: agents never delete
      kubernetes: { verbs: [delete, deletecollection] }
      action: deny
`;

interface Run { code: number; stdout: string; stderr: string }

describe('kubernetes proxy e2e on the REAL kube-apiserver v1.20.2', function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let core: k8s.CoreV1Api;
  let dir: string;
  let prefix: string; // plays the pod's filesystem root for loadFromCluster()
  let identityDir: string;
  let proxyPort: number;
  let healthPort: number;
  let sidecar: ChildProcess | undefined;
  let sidecarStderr = '';
  let kubeconfig: string;
  let agentToken: string; // the local token the sidecar wrote for the agent
  let realToken: string; // the pod's real service-account token, held by the sidecar only

  function kubectl(bin: string, args: string[]): Promise<Run> {
    return new Promise((resolve) => {
      execFile(
        bin,
        args,
        { env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG: kubeconfig, KUBECACHEDIR: path.join(dir, `cache-${path.basename(bin)}`) }, timeout: 30_000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });
  }

  /** The agent's in-cluster client: client-node's loadFromCluster() on the files the sidecar wrote. */
  function agentConfig(): k8s.KubeConfig {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = String(proxyPort);
    try {
      const kc = new k8s.KubeConfig();
      kc.loadFromCluster(prefix);
      return kc;
    } finally {
      if (saved.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST; else process.env.KUBERNETES_SERVICE_HOST = saved.host;
      if (saved.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT; else process.env.KUBERNETES_SERVICE_PORT = saved.port;
    }
  }

  /** Raw HTTPS to a server with a bearer token: to compare the proxy's bytes with the API server's own. */
  async function raw(server: string, caPem: string, token: string, urlPath: string): Promise<{ status: number; body: unknown }> {
    const dispatcher = new Agent({ connect: { ca: caPem } });
    try {
      const res = await request(`${server}${urlPath}`, { dispatcher, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
      return { status: res.statusCode, body: await res.body.json() };
    } finally {
      await dispatcher.close();
    }
  }

  before(async function () {
    this.timeout(60 * 60_000); // the first run on a machine builds the control plane
    cluster = await sharedKubeCluster();
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const rbac = cluster.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-e2e-proxy-'));
    prefix = path.join(dir, 'pod') + '/';
    identityDir = path.join(prefix, SA_PATH);
    await mkdir(identityDir, { recursive: true });

    // The agent's namespace: a service account that Kubernetes RBAC lets read (not delete)
    // configmaps, secrets and pods here — and nothing in other namespaces.
    await cluster.createNamespace(NS);
    await cluster.createServiceAccount(NS, SA);
    await rbac.createNamespacedRole({
      namespace: NS,
      body: {
        metadata: { name: 'agent-reader' },
        rules: [
          { apiGroups: [''], resources: ['configmaps', 'secrets', 'pods'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'update', 'patch', 'delete'] },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: NS,
      body: {
        metadata: { name: 'agent-reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'agent-reader' },
        subjects: [{ kind: 'ServiceAccount', name: SA, namespace: NS }],
      },
    });
    await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'cards' }, data: { note: `refund card ${PAN} today`, plain: 'nothing to hide' } } });
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'card-vault' }, type: 'Opaque', data: { pan: Buffer.from(PAN).toString('base64'), user: Buffer.from('svc-payments').toString('base64') } },
    });

    // The sidecar's own credentials: a real token from TokenRequest and the cluster CA,
    // where the kubelet would have projected them.
    const upstreamDir = path.join(dir, 'upstream');
    await mkdir(upstreamDir);
    realToken = await cluster.requestToken(NS, SA, { expirationSeconds: 3600 });
    await writeFile(path.join(upstreamDir, 'token'), realToken);
    await writeFile(path.join(upstreamDir, 'ca.crt'), cluster.caPem);
    await writeFile(path.join(dir, 'policy.yaml'), POLICY);
    [proxyPort, healthPort] = await Promise.all([freePort(), freePort()]);
    const metricsPort = await freePort();
    const config = path.join(dir, 'sidecar.yaml');
    await writeFile(config, [
      'kubernetes:',
      `  listen: 127.0.0.1:${proxyPort}`,
      `  identityDir: ${identityDir}`,
      `  sessionDir: ${path.join(dir, 'sessions')}`,
      '  upstream:',
      `    server: ${cluster.server}`,
      `    caFile: ${path.join(upstreamDir, 'ca.crt')}`,
      `    tokenFile: ${path.join(upstreamDir, 'token')}`,
      `policy: { file: ${path.join(dir, 'policy.yaml')} }`,
      `audit: { file: ${path.join(dir, 'audit.jsonl')} }`,
      `health: { listen: 127.0.0.1:${healthPort} }`,
      `metrics: { listen: 127.0.0.1:${metricsPort} }`,
      '',
    ].join('\n'));

    sidecar = spawn(process.execPath, [CLI, 'sidecar', '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        AGENTGATE_POD_NAMESPACE: NS,
        AGENTGATE_POD_NAME: 'agent-0',
        AGENTGATE_POD_UID: '6f1d1c52-0000-4000-8000-000000000001',
        AGENTGATE_SERVICE_ACCOUNT: SA,
        KUBERNETES_SERVICE_HOST: '',
        KUBERNETES_SERVICE_PORT: '',
      },
    });
    sidecar.stderr!.on('data', (d: Buffer) => (sidecarStderr += d.toString()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (sidecar.exitCode !== null) throw new Error(`agentgate sidecar exited with ${sidecar.exitCode}: ${sidecarStderr}`);
      try {
        const res = await request(`http://127.0.0.1:${healthPort}/healthz/ready`);
        await res.body.text();
        if (res.statusCode === 200) break;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error(`agentgate sidecar not ready after 30 s: ${sidecarStderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    agentToken = (await readFile(path.join(identityDir, 'token'), 'utf8')).trim();
    kubeconfig = path.join(dir, 'agent.kubeconfig');
    await writeFile(kubeconfig, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'in-cluster', cluster: { server: `https://127.0.0.1:${proxyPort}`, 'certificate-authority': path.join(identityDir, 'ca.crt') } }],
      users: [{ name: 'agent', user: { tokenFile: path.join(identityDir, 'token') } }],
      contexts: [{ name: 'agent', context: { cluster: 'in-cluster', user: 'agent', namespace: NS } }],
      'current-context': 'agent',
    }));
  });

  after(async function () {
    if (sidecar && sidecar.exitCode === null) {
      const exited = new Promise((r) => sidecar!.once('exit', r));
      sidecar.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (sidecar.exitCode === null) sidecar.kill('SIGKILL');
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives the agent a local token that the real API server does not accept', async function () {
    expect(agentToken).to.not.equal(realToken);
    const direct = await raw(cluster.server, cluster.caPem, agentToken, `/api/v1/namespaces/${NS}/configmaps`);
    expect(direct.status).to.equal(401);
  });

  for (const bin of [KUBECTL_OLDEST, KUBECTL_NEWEST]) {
    it(`${path.basename(bin)}: get configmap shows the PAN masked, other values as stored`, async function () {
      const r = await kubectl(bin, ['get', 'configmap', 'cards', '-o', 'json']);
      expect(r.stderr).to.not.match(/error/i);
      const cm = JSON.parse(r.stdout) as k8s.V1ConfigMap;
      expect(cm.data).to.deep.equal({ note: `refund card ${PAN_MASKED} today`, plain: 'nothing to hide' });
      expect(r.stdout).to.not.include(PAN);
    });

    it(`${path.basename(bin)}: get secret masks the PAN inside the base64 data`, async function () {
      const r = await kubectl(bin, ['get', 'secret', 'card-vault', '-o', 'json']);
      const secret = JSON.parse(r.stdout) as k8s.V1Secret;
      expect(Buffer.from(secret.data!.pan!, 'base64').toString()).to.equal(PAN_MASKED);
      expect(Buffer.from(secret.data!.user!, 'base64').toString()).to.equal('svc-payments');
    });

    it(`${path.basename(bin)}: a delete refused by our policy prints a Forbidden error naming the rule, and deletes nothing`, async function () {
      const r = await kubectl(bin, ['delete', 'configmap', 'cards']);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/^Error from server \(Forbidden\): .*no-deletes/m);
      const still = await core.readNamespacedConfigMap({ name: 'cards', namespace: NS });
      expect(still.metadata!.name).to.equal('cards');
    });

    it(`${path.basename(bin)}: an RBAC denial by the real API server comes through unchanged`, async function () {
      const r = await kubectl(bin, ['get', 'pods', '-n', 'default']);
      expect(r.code).to.equal(1);
      expect(r.stderr.trim().split('\n').at(-1)).to.equal(
        `Error from server (Forbidden): pods is forbidden: User "${SA_USER}" cannot list resource "pods" in API group "" in the namespace "default"`,
      );
    });

    it(`${path.basename(bin)}: the API server's own NotFound Status reaches kubectl`, async function () {
      const r = await kubectl(bin, ['get', 'configmap', 'no-such-map']);
      expect(r.code).to.equal(1);
      expect(r.stderr.trim()).to.equal('Error from server (NotFound): configmaps "no-such-map" not found');
    });
  }

  it('passes the real server\'s 403 Status through byte-for-byte equal to what the token gets directly', async function () {
    const via = await raw(`https://127.0.0.1:${proxyPort}`, await readFile(path.join(identityDir, 'ca.crt'), 'utf8'), agentToken, '/api/v1/namespaces/default/pods');
    const direct = await raw(cluster.server, cluster.caPem, realToken, '/api/v1/namespaces/default/pods');
    expect(direct.status).to.equal(403);
    expect(via).to.deep.equal(direct);
  });

  it('client-node loadFromCluster(): list masks every PAN, and the list carries the server\'s resourceVersion', async function () {
    const agent = agentConfig().makeApiClient(k8s.CoreV1Api);
    const list = await agent.listNamespacedConfigMap({ namespace: NS });
    const cards = list.items.find((c) => c.metadata!.name === 'cards')!;
    expect(cards.data!.note).to.equal(`refund card ${PAN_MASKED} today`);
    const direct = await core.listNamespacedConfigMap({ namespace: NS });
    expect(Number(list.metadata!.resourceVersion)).to.be.at.least(Number(cards.metadata!.resourceVersion));
    expect(list.items.map((c) => c.metadata!.resourceVersion)).to.deep.equal(direct.items.map((c) => c.metadata!.resourceVersion));
  });

  it('client-node: the real server\'s 409 AlreadyExists and 422 Invalid Status come through', async function () {
    const agent = agentConfig().makeApiClient(k8s.CoreV1Api);
    const errOf = async (p: Promise<unknown>) => p.then(() => { throw new Error('expected an error'); }, (e: { code: number; body: string }) => ({ code: e.code, status: JSON.parse(e.body) as { reason: string; message: string } }));
    const exists = await errOf(agent.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'cards' } } }));
    expect(exists.code).to.equal(409);
    expect(exists.status).to.include({ reason: 'AlreadyExists', message: 'configmaps "cards" already exists' });
    const invalid = await errOf(agent.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'Not_A_Name' } } }));
    expect(invalid.code).to.equal(422);
    expect(invalid.status.reason).to.equal('Invalid');
    expect(invalid.status.message).to.match(/^ConfigMap "Not_A_Name" is invalid: metadata.name: Invalid value: "Not_A_Name"/);
  });

  it('pages a list with the real server\'s continue tokens (limit), every page masked', async function () {
    for (let i = 0; i < 5; i++) {
      await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: `page-${i}` }, data: { pan: PAN } } });
    }
    const agent = agentConfig().makeApiClient(k8s.CoreV1Api);
    const names: string[] = [];
    let cont: string | undefined;
    let pages = 0;
    do {
      const page = await agent.listNamespacedConfigMap({ namespace: NS, limit: 2, _continue: cont });
      pages++;
      for (const c of page.items) {
        names.push(c.metadata!.name!);
        if (c.metadata!.name!.startsWith('page-')) expect(c.data!.pan).to.equal(PAN_MASKED);
      }
      cont = page.metadata!._continue || undefined;
    } while (cont);
    const direct = (await core.listNamespacedConfigMap({ namespace: NS })).items.map((c) => c.metadata!.name!);
    expect(names).to.deep.equal(direct);
    expect(pages).to.equal(Math.ceil(direct.length / 2));
  });

  it('refuses a client that accepts protobuf only with a 406 Status asking for JSON (only JSON can be masked)', async function () {
    const dispatcher = new Agent({ connect: { ca: await readFile(path.join(identityDir, 'ca.crt'), 'utf8') } });
    try {
      const res = await request(`https://127.0.0.1:${proxyPort}/api/v1/namespaces/${NS}/configmaps/cards`, {
        dispatcher,
        headers: { authorization: `Bearer ${agentToken}`, accept: 'application/vnd.kubernetes.protobuf' },
      });
      const text = await res.body.text();
      expect(res.statusCode).to.equal(406);
      expect(JSON.parse(text)).to.deep.include({ kind: 'Status', reason: 'NotAcceptable', code: 406 });
      expect((JSON.parse(text) as { message: string }).message).to.include('ask for application/json');
    } finally {
      await dispatcher.close();
    }
  });

  it('client-node watch: events are masked, and a watch resumed from a real resourceVersion gets exactly what happened since', async function () {
    const kc = agentConfig();
    const agent = kc.makeApiClient(k8s.CoreV1Api);
    const rv = (await agent.listNamespacedConfigMap({ namespace: NS })).metadata!.resourceVersion!;
    // Changes made while the agent is not watching, through the real API server directly.
    await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'while-away' }, data: { pan: PAN } } });
    await core.patchNamespacedConfigMap(
      { name: 'while-away', namespace: NS, body: [{ op: 'replace', path: '/data/pan', value: `${PAN} (updated)` }] },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
    );

    const seen: Array<{ type: string; name: string; pan?: string; rv: string }> = [];
    const watch = new k8s.Watch(kc);
    let done!: () => void;
    const twoEvents = new Promise<void>((r) => (done = r));
    const req = await watch.watch(`/api/v1/namespaces/${NS}/configmaps`, { resourceVersion: rv, allowWatchBookmarks: false }, (type, obj: k8s.V1ConfigMap) => {
      seen.push({ type, name: obj.metadata!.name!, pan: obj.data?.pan, rv: obj.metadata!.resourceVersion! });
      if (seen.length === 2) done();
    }, () => undefined);
    try {
      await Promise.race([twoEvents, new Promise((_, rej) => setTimeout(() => rej(new Error(`watch saw ${JSON.stringify(seen)}`)), 20_000))]);
    } finally {
      req.abort();
    }
    const stored = await core.readNamespacedConfigMap({ name: 'while-away', namespace: NS });
    expect(seen.map((e) => [e.type, e.name, e.pan])).to.deep.equal([
      ['ADDED', 'while-away', PAN_MASKED],
      ['MODIFIED', 'while-away', `${PAN_MASKED} (updated)`],
    ]);
    expect(seen[1]!.rv).to.equal(stored.metadata!.resourceVersion);
    expect(Number(seen[0]!.rv)).to.be.greaterThan(Number(rv));
  });

  it('kubectl.1.33 get --watch: the listed objects and an object created afterwards arrive masked', async function () {
    const child = spawn(KUBECTL_NEWEST, ['get', 'configmaps', '--watch', '-o', 'json'], {
      env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG: kubeconfig, KUBECACHEDIR: path.join(dir, 'cache-watch') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const parse = () => out.split(/\n(?=\{)/).map((t) => JSON.parse(t) as k8s.V1ConfigMap);
    const printed = (name: string) => new Promise<void>((resolve) => {
      // Resolves once that object is printed in full (kubectl may flush an object in pieces).
      const check = () => { try { if (parse().some((o) => o.metadata!.name === name)) resolve(); } catch { /* partial */ } };
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); check(); });
      check();
    });
    const timeout = (what: string) => new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`kubectl --watch: no ${what} in: ${out} ${err}`)), 20_000));
    try {
      // kubectl lists first and then watches from the list's resourceVersion: once the
      // listed objects are printed, anything created later must come as a watch event.
      await Promise.race([printed('cards'), timeout('listed cards')]);
      await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'watched-live' }, data: { pan: PAN } } });
      await Promise.race([printed('watched-live'), timeout('watched-live event')]);
    } finally {
      child.kill('SIGTERM');
    }
    const byName = Object.fromEntries(parse().map((o) => [o.metadata!.name, o.data]));
    expect(byName['cards']).to.deep.equal({ note: `refund card ${PAN_MASKED} today`, plain: 'nothing to hide' });
    expect(byName['watched-live']).to.deep.equal({ pan: PAN_MASKED });
    expect(out).to.not.include(PAN);
  });

  it('audits the refused delete with the API server\'s own decision annotation, and no audit line holds the PAN', async function () {
    const text = await readFile(path.join(dir, 'audit.jsonl'), 'utf8');
    expect(text).to.not.include(PAN);
    const events = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { protocol?: string; verb?: string; annotations?: Record<string, string> });
    const kube = events.filter((e) => e.protocol === 'kubernetes');
    expect(kube.some((e) => e.verb === 'delete' && e.annotations?.['authorization.k8s.io/decision'] === 'forbid')).to.equal(true);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && sidecarStderr) console.log(`      sidecar stderr (last 4 kB):\n${sidecarStderr.slice(-4000)}`);
  });
});
