// The request the proxy decides on is the request the REAL kube-apiserver v1.20.2 executes.
// The control plane runs with its own audit log at Metadata level: every request that reached
// it left an event naming what the server understood (verb, resource, namespace, name,
// requestURI), which is compared with what the proxy decided and recorded. The proxy runs
// in-process (test/sidecar/kubernetes/harness.ts) in front of the real server, forwarding with
// a system:masters token, so nothing but the proxy stands between a request and its effect.

import { expect } from 'chai';
import { execFile } from 'node:child_process';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import * as k8s from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { startKubeCluster, type KubeCluster } from '../support/kube-cluster.js';
import { KUBECTL_NEW, KUBECTL_OLD, startHarness } from '../sidecar/kubernetes/harness.js';
import type { Harness } from '../sidecar/kubernetes/harness.js';
import type { KubeApiDouble } from '../support/kube-api-double.js';
import type { AuditRecord } from '../../core/audit/types.js';
import { canonicalTarget } from '../../core/kube/canonical.js';

const POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: canonical-e2e }
spec:
  default: deny
  rules:
    - name: one-secret
      kubernetes: { verbs: [get, list, watch], resources: [secrets], namespaces: [payments], names: [app-config] }
      action: allow
    - name: payments-workloads
      kubernetes: { verbs: [get, list, watch, create, update, patch], resources: [configmaps, deployments, pods, events], namespaces: [payments] }
      action: allow
    - name: exec-in-sandbox
      kubernetes: { verbs: [create], resources: [pods/exec], namespaces: [sandbox] }
      action: allow
    - name: attach-in-sandbox
      kubernetes: { verbs: [create], resources: [pods/attach], namespaces: [sandbox] }
      action: allow
`;

const ALLOW_ALL = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: differential }
spec:
  default: allow
  rules:
    - name: no-deletes
      kubernetes: { verbs: [delete, deletecollection] }
      action: deny
`;

interface ServerEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  userAgent?: string;
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('kubernetes proxy: canonical requests against the REAL kube-apiserver v1.20.2', function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let h: Harness;
  let token: string;
  let core: k8s.CoreV1Api;

  before(async function () {
    this.timeout(60 * 60_000); // the first run on a machine builds the control plane
    cluster = await startKubeCluster({ auditLevel: 'Metadata' });
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    await cluster.createNamespace('payments');
    await cluster.createNamespace('sandbox');
    for (const [name, value] of [['app-config', 'mode=live'], ['db-password', 's3cr3t-db']] as const) {
      await core.createNamespacedSecret({ namespace: 'payments', body: { metadata: { name }, stringData: { value } } });
    }
    await cluster.kubeConfig.makeApiClient(k8s.AppsV1Api).createNamespacedDeployment({
      namespace: 'payments',
      body: {
        metadata: { name: 'web' },
        spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } },
      },
    });
    // The sidecar's upstream: the real server with a system:masters token (what the proxy lets through is all that limits the agent).
    const upstream = { url: cluster.server, token: cluster.adminToken, caPem: cluster.caPem } as unknown as KubeApiDouble;
    h = await startHarness({ policy: POLICY, double: upstream });
    token = await h.token();
  });

  after(async () => {
    await h?.stop();
    await cluster?.stop();
  });

  /** A request with exactly this target, through the proxy (Node sends the path as given). */
  function send(target: string, o: { method?: string; headers?: Record<string, string>; upgrade?: boolean; server?: string; token?: string; abortAfterMs?: number } = {}): Promise<Reply> {
    const server = new URL(o.server ?? `https://${h.proxy.address}`);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${o.token ?? token}`, accept: 'application/json', ...o.headers };
      if (o.upgrade) {
        Object.assign(headers, { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), 'sec-websocket-protocol': 'v5.channel.k8s.io' });
      }
      const req = https.request({
        host: server.hostname, port: server.port, method: o.method ?? 'GET', path: target, headers,
        ca: o.server ? cluster.caPem : undefined, rejectUnauthorized: !!o.server, agent: false,
      });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        res.on('end', done);
        res.on('close', done);
        if (o.abortAfterMs !== undefined) setTimeout(() => req.destroy(), o.abortAfterMs).unref();
      });
      req.on('error', (err) => (o.abortAfterMs !== undefined ? undefined : reject(err)));
      req.end();
    });
  }

  async function serverEvents(): Promise<ServerEvent[]> {
    const text = await readFile(cluster.auditLog!, 'utf8');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as ServerEvent);
  }

  /**
   * The server's events once everything sent before has been logged: a sentinel request,
   * sent last, is waited for (events are written as each request ends).
   */
  async function eventsAfterSentinel(): Promise<ServerEvent[]> {
    const mark = randomBytes(8).toString('hex');
    const direct = new Agent({ connect: { ca: cluster.caPem } });
    try {
      const r = await request(`${cluster.server}/version?sentinel=${mark}`, { dispatcher: direct, headers: { authorization: `Bearer ${cluster.adminToken}` } });
      await r.body.dump();
    } finally {
      await direct.close();
    }
    for (let i = 0; i < 100; i++) {
      const evs = await serverEvents();
      if (evs.some((e) => e.requestURI.includes(mark))) return evs;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the API server did not log the sentinel request');
  }

  const statusOf = (r: Reply) => JSON.parse(r.body) as { code: number; reason: string; message: string };

  describe('a policy scoped to one Secret', () => {
    const attacks = [
      ['a raw ; inside the field selector', '/api/v1/namespaces/payments/secrets?fieldSelector=metadata.name%3Dapp-config,a;b', "query has a raw ';'"],
      ['an invalid %zz escape in the field selector', '/api/v1/namespaces/payments/secrets?fieldSelector=metadata.name%3Dapp-config%2C%zz', 'invalid percent escape'],
    ] as const;

    for (const [what, target, message] of attacks) {
      it(`the API server itself drops a selector with ${what} and lists every Secret`, async () => {
        const r = await send(target, { server: cluster.server, token: cluster.adminToken });
        expect(r.status).to.equal(200);
        const names = (JSON.parse(r.body) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name);
        expect(names).to.include.members(['app-config', 'db-password']);
      });

      it(`refuses a selector with ${what} with a 400 Status, and the API server never sees it`, async () => {
        const agent = `agentgate-attack/${randomBytes(4).toString('hex')}`;
        const r = await send(target, { headers: { 'user-agent': agent } });
        expect(r.status).to.equal(400);
        expect(statusOf(r)).to.include({ code: 400, reason: 'BadRequest' });
        expect(statusOf(r).message).to.match(/^agentgate: /).and.to.include(message);
        expect((await eventsAfterSentinel()).filter((e) => e.userAgent === agent)).to.deep.equal([]);
      });
    }

    it('lists only the named Secret when the selector is well formed, and the server lists by the same name', async () => {
      const agent = `agentgate-attack/${randomBytes(4).toString('hex')}`;
      const r = await send('/api/v1/namespaces/payments/secrets?fieldSelector=metadata.name%3Dapp-config', { headers: { 'user-agent': agent } });
      expect(r.status).to.equal(200);
      expect((JSON.parse(r.body) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name)).to.deep.equal(['app-config']);
      const evs = (await eventsAfterSentinel()).filter((e) => e.userAgent === agent);
      expect(evs.map((e) => e.objectRef)).to.deep.equal([{ resource: 'secrets', namespace: 'payments', name: 'app-config', apiVersion: 'v1' }]);
    });

    it('refuses a list of every Secret (the rule names one)', async () => {
      const r = await send('/api/v1/namespaces/payments/secrets');
      expect(r.status).to.equal(403);
    });
  });

  describe('exec and attach targets that URL handling could rewrite', () => {
    const targets = [
      ['backslashes and .. walking into another namespace', '/api/v1/namespaces/sandbox/pods/x/exec/..\\..\\..\\..\\payments\\pods\\db-0\\exec?command=id&stdout=true', 'backslash'],
      ['an attach that .. turns into an exec', '/api/v1/namespaces/sandbox/pods/web-0/attach/../exec?command=id&stdout=true', "'.' or '..' segment"],
      ['%2e%2e segments', '/api/v1/namespaces/sandbox/pods/x/exec/%2e%2e/%2e%2e/%2e%2e/%2e%2e/payments/pods/db-0/exec?command=id&stdout=true', "'.' or '..' segment"],
      ['a target that names a host (//api/…)', '//api/v1/namespaces/sandbox/pods/x/exec?command=id&stdout=true', 'not a path (origin-form)'],
      ['an encoded slash', '/api/v1/namespaces/sandbox%2F..%2Fpayments/pods/db-0/exec?command=id&stdout=true', "encoded '/'"],
    ] as const;
    for (const [what, target, message] of targets) {
      for (const upgrade of [true, false]) {
        it(`refuses ${what} (${upgrade ? 'WebSocket upgrade' : 'plain POST'}) with a 400 Status, sending nothing upstream`, async () => {
          const agent = `agentgate-attack/${randomBytes(4).toString('hex')}`;
          const r = await send(target, { upgrade, method: upgrade ? 'GET' : 'POST', headers: { 'user-agent': agent } });
          expect(r.status).to.equal(400);
          expect(statusOf(r).message).to.match(/^agentgate: /).and.to.include(message);
          expect((await eventsAfterSentinel()).filter((e) => e.userAgent === agent)).to.deep.equal([]);
        });
      }
    }

    it('refuses a plain GET of //api/… (a host to URL libraries) with a 400 Status', async () => {
      const r = await send('//api/v1/namespaces/payments/secrets');
      expect(r.status).to.equal(400);
      expect(statusOf(r).message).to.include('not a path (origin-form)');
    });

    it('forwards an allowed exec to the pod the policy decided on (the API server answers for sandbox/x)', async () => {
      const agent = `agentgate-attack/${randomBytes(4).toString('hex')}`;
      await send('/api/v1/namespaces/sandbox/pods/x/exec?command=id&stdout=true', { upgrade: true, headers: { 'user-agent': agent } });
      const evs = (await eventsAfterSentinel()).filter((e) => e.userAgent === agent);
      expect(evs.length).to.be.greaterThan(0);
      for (const e of evs) expect(e.objectRef).to.deep.include({ resource: 'pods', namespace: 'sandbox', name: 'x', subresource: 'exec' });
    });
  });

  describe('differential: a seeded corpus of request targets', () => {
    it('for every request that reached the API server, the server read what the proxy decided', async function () {
      this.timeout(300_000);
      h.setPolicy(ALLOW_ALL);
      try {
        const corpus = fc.sample(targetArbitrary(), { seed: 20261201, numRuns: 400 });
        const sent: { target: string; agent: string; auditID: string; status: number; body: string }[] = [];
        for (const [i, target] of corpus.entries()) {
          const agent = `agentgate-differential/${i}`;
          const r = await send(target, { headers: { 'user-agent': agent }, abortAfterMs: 400 });
          sent.push({ target, agent, auditID: String(r.headers['audit-id'] ?? ''), status: r.status, body: r.body });
        }
        const server = await eventsAfterSentinel();
        await h.audit.flush();
        const records = (await h.events()).filter((e) => e.stage === 'ResponseComplete' || e.stage === 'ResponseStarted');
        const byAuditID = new Map<string, AuditRecord>();
        for (const rec of records) byAuditID.set(rec.auditID, rec);

        const mismatches: string[] = [];
        let forwarded = 0;
        let refused = 0;
        for (const s of sent) {
          const evs = server.filter((e) => e.userAgent === s.agent);
          const rec = byAuditID.get(s.auditID);
          if (!rec) {
            mismatches.push(`${s.target}: no proxy audit record (HTTP ${s.status})`);
            continue;
          }
          const upstreamID = rec.annotations?.['agentgate.dev/upstream-audit-id'];
          if (!upstreamID && s.status === 400 && s.body.includes('"agentgate: ')) {
            refused++;
            if (evs.length) mismatches.push(`${s.target}: refused by the proxy, yet the API server logged ${evs[0]!.requestURI}`);
            continue;
          }
          // Each request has its own User-Agent; the Audit-Id header, which ties the two records
          // together, is not always on a watch's response headers, and the server's UUID in the
          // proxy's record may hold a digit window the audit masker changed.
          const ids = new Set(evs.map((e) => e.auditID));
          const ev = (upstreamID ? evs.find((e) => e.auditID === upstreamID) : undefined) ?? (ids.size === 1 ? evs.at(-1) : undefined);
          if (!ev) {
            mismatches.push(`${s.target}: forwarded (HTTP ${s.status}) but no server event ${upstreamID} (proxy record: ${JSON.stringify({ stage: rec.stage, code: rec.responseStatus, annotations: rec.annotations })}; server events from this client: ${JSON.stringify(evs.map((e) => [e.stage, e.auditID]))})`);
            continue;
          }
          forwarded++;
          const proxySaw = {
            verb: rec.verb,
            resource: rec.objectRef?.resource ?? '',
            subresource: rec.objectRef?.subresource ?? '',
            namespace: rec.objectRef?.namespace ?? '',
            name: rec.objectRef?.name ?? '',
            fieldSelector: canonicalTarget(rec.requestURI ?? '/').query.get('fieldSelector')?.[0] ?? null,
          };
          const serverSaw = {
            verb: ev.verb,
            resource: ev.objectRef?.resource ?? '',
            subresource: ev.objectRef?.subresource ?? '',
            namespace: ev.objectRef?.namespace ?? '',
            name: ev.objectRef?.name ?? '',
            fieldSelector: new URL(ev.requestURI, 'https://server').searchParams.get('fieldSelector'),
          };
          if (JSON.stringify(proxySaw) !== JSON.stringify(serverSaw)) {
            mismatches.push(`${s.target}: proxy ${JSON.stringify(proxySaw)} server ${JSON.stringify(serverSaw)} (server URI ${ev.requestURI})`);
          }
        }
        expect(mismatches).to.deep.equal([]);
        // The corpus is only worth something if it exercises both sides.
        expect(forwarded).to.be.greaterThan(corpus.length / 4);
        expect(refused).to.be.greaterThan(corpus.length / 10);
      } finally {
        h.setPolicy(POLICY);
      }
    });
  });

  describe('watches answer at once', () => {
    /** kubectl, and whether it ended by itself (a hang is killed after 15 s). */
    function kubectl(bin: string, args: string[]): Promise<{ code: number | null; killed: boolean; stdout: string; stderr: string }> {
      return new Promise((resolve) => {
        execFile(bin, args, { env: { PATH: process.env.PATH ?? '', HOME: h.dir, KUBECONFIG: h.kubeconfig, KUBECACHEDIR: path.join(h.dir, `cache-${path.basename(bin)}`) }, timeout: 15_000 },
          (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, killed: !!err?.killed, stdout, stderr }));
      });
    }

    for (const bin of [KUBECTL_OLD, KUBECTL_NEW]) {
      it(`${path.basename(bin)}: get -w --request-timeout=2s lists, then returns by itself`, async () => {
        const r = await kubectl(bin, ['get', 'deployments', '-w', '--request-timeout=2s']);
        expect(r.killed, r.stderr).to.equal(false);
        expect(r.stdout).to.match(/^web\s/m);
      });

      it(`${path.basename(bin)}: rollout status --timeout=2s returns by itself (no kubelet: the rollout never completes)`, async () => {
        const r = await kubectl(bin, ['rollout', 'status', 'deployment/web', '--timeout=2s']);
        expect(r.killed, r.stderr).to.equal(false);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.include('timed out waiting for the condition');
      });
    }
  });

  describe('kubectl reads the OpenAPI documents it asks for (protobuf)', () => {
    for (const bin of [KUBECTL_OLD, KUBECTL_NEW]) {
      const name = path.basename(bin).replace(/\./g, '-');
      const manifest = (value: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `applied-${name}`, namespace: 'payments' }, data: { value } });

      it(`${path.basename(bin)}: apply (client-side, validated) creates and then updates a ConfigMap`, async () => {
        const file = path.join(h.dir, `${name}.json`);
        await writeFile(file, manifest('one'));
        let r = await h.kubectl(bin, ['apply', '-f', file]);
        expect(r.stderr).to.equal('');
        expect(r.stdout.trim()).to.equal(`configmap/applied-${name} created`);
        await writeFile(file, manifest('two'));
        r = await h.kubectl(bin, ['apply', '-f', file]);
        expect(r.stderr).to.equal('');
        expect(r.stdout.trim()).to.equal(`configmap/applied-${name} configured`);
      });

      it(`${path.basename(bin)}: diff shows the change a manifest would make`, async () => {
        const file = path.join(h.dir, `${name}-diff.json`);
        await writeFile(file, manifest('three'));
        const r = await h.kubectl(bin, ['diff', '-f', file]);
        expect(r.code, r.stderr).to.equal(1); // 1: differences found
        expect(r.stdout).to.match(/^-\s+value: two$/m).and.to.match(/^\+\s+value: three$/m);
      });

      it(`${path.basename(bin)}: apply --server-side updates the ConfigMap`, async () => {
        const file = path.join(h.dir, `${name}-ss.json`);
        await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `server-side-${name}`, namespace: 'payments' }, data: { value: 'ss' } }));
        const r = await h.kubectl(bin, ['apply', '--server-side', '-f', file]);
        expect(r.stderr).to.equal('');
        expect(r.stdout.trim()).to.equal(`configmap/server-side-${name} serverside-applied`);
      });

      it(`${path.basename(bin)}: explain describes a field`, async () => {
        const r = await h.kubectl(bin, ['explain', 'configmap.data']);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.match(/^KIND:\s+ConfigMap$/m).and.to.match(/^FIELD:\s+data/m);
      });
    }

    it('passes /openapi/v2 as protobuf byte for byte, as the server sends it', async () => {
      const accept = 'application/com.github.proto-openapi.spec.v2@v1.0+protobuf';
      const direct = new Agent({ connect: { ca: cluster.caPem } });
      const viaProxy = new Agent({ connect: { ca: await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8') } });
      try {
        const a = await request(`${cluster.server}/openapi/v2`, { dispatcher: direct, headers: { authorization: `Bearer ${cluster.adminToken}`, accept } });
        const b = await request(`https://${h.proxy.address}/openapi/v2`, { dispatcher: viaProxy, headers: { authorization: `Bearer ${token}`, accept } });
        expect(b.statusCode).to.equal(200);
        expect(b.headers['content-type']).to.equal(a.headers['content-type']);
        expect(Buffer.from(await b.body.arrayBuffer()).equals(Buffer.from(await a.body.arrayBuffer()))).to.equal(true);
      } finally {
        await direct.close();
        await viaProxy.close();
      }
    });

    it('refuses a resource request that accepts only protobuf with a 406 Status naming JSON', async () => {
      const r = await send('/api/v1/namespaces/payments/configmaps', { headers: { accept: 'application/vnd.kubernetes.protobuf' } });
      expect(r.status).to.equal(406);
      expect(statusOf(r).message).to.include('application/json');
    });
  });
});

// ---- the corpus ----

const pct = (c: string, lower: boolean) => {
  const h = c.charCodeAt(0).toString(16).padStart(2, '0');
  return `%${lower ? h : h.toUpperCase()}`;
};

/** A string with some of its characters percent-encoded (upper or lower hex), as clients variously do. */
const encodedAs = (s: string) =>
  fc.array(fc.constantFrom('keep', 'keep', 'keep', 'upper', 'lower'), { minLength: s.length, maxLength: s.length }).map((how) =>
    [...s].map((c, i) => (how[i] === 'keep' ? c : pct(c, how[i] === 'lower'))).join(''),
  );

const segmentEncoded = (s: string) =>
  fc.oneof({ weight: 16, arbitrary: fc.constant(s) }, { weight: 8, arbitrary: encodedAs(s) }, { weight: 1, arbitrary: fc.constantFrom(`${s}%zz`, `${s}%2F..`, `${s}\\..`, `${s}%5c`) });

function targetArbitrary(): fc.Arbitrary<string> {
  const prefix = fc.constantFrom<string[]>(['api', 'v1'], ['apis', 'apps', 'v1'], ['api', 'v1', 'watch'], ['apis', 'batch', 'v1']);
  const resourcePath = fc.record({
    prefix,
    ns: fc.option(fc.constantFrom('payments', 'sandbox', 'kube-system', 'default', 'no-such-ns')),
    resource: fc.constantFrom('pods', 'secrets', 'configmaps', 'deployments', 'serviceaccounts', 'namespaces', 'events', 'jobs'),
    name: fc.option(fc.constantFrom('app-config', 'db-password', 'web', 'web-0', 'a.b', 'x:y', 'caf%C3%A9')),
    sub: fc.option(fc.constantFrom('status', 'log', 'scale', 'binding', 'token')),
  }).map(({ prefix, ns, resource, name, sub }) => {
    const segs = [...prefix];
    if (ns !== null) segs.push('namespaces', ns);
    segs.push(resource);
    if (name !== null) {
      segs.push(name);
      if (sub !== null) segs.push(sub);
    }
    return segs;
  });
  const nonResource = fc.constantFrom<string[]>(['version'], ['api'], ['apis'], ['apis', 'apps', 'v1'], ['healthz'], ['api', 'v1']);
  const segments = fc.oneof({ weight: 5, arbitrary: resourcePath }, { weight: 1, arbitrary: nonResource });

  // A hostile shape of the path now and then: dot segments, empty segments, a trailing slash, a host-like start.
  const pathOf = segments.chain((segs) =>
    fc.tuple(fc.tuple(...segs.map((s) => segmentEncoded(s))), fc.constantFrom(...Array<string>(14).fill('none'), 'dot', 'dotdot', 'empty', 'trailing', 'double-start', 'pct-dotdot')).map(([enc, hostile]) => {
      const parts = [...enc];
      const at = Math.max(1, parts.length - 1);
      if (hostile === 'dot') parts.splice(at, 0, '.');
      if (hostile === 'dotdot') parts.splice(at, 0, 'x', '..');
      if (hostile === 'pct-dotdot') parts.splice(at, 0, 'x', '%2e%2E');
      if (hostile === 'empty') parts.splice(at, 0, '');
      const p = '/' + parts.join('/');
      if (hostile === 'trailing') return `${p}/`;
      if (hostile === 'double-start') return `/${p}`;
      return p;
    }),
  );

  const selectors = [
    'metadata.name=app-config', 'metadata.name==db-password', 'metadata.name!=app-config', 'status.phase=Running,metadata.name=web-0',
    'metadata.name=b,metadata.name=a', 'metadata.name=app-config,a;b', 'metadata.name', 'metadata.name=a\\,b', 'spec.nodeName=',
    'metadata.namespace=payments', 'metadata.name=app-config,metadata.namespace!=x', ' metadata.name=app-config', 'metadata.name=x=y',
    'metadata.name=.', 'metadata.name=a%b',
  ];
  const pair = fc.oneof(
    fc.tuple(fc.constant('fieldSelector'), fc.constantFrom(...selectors)),
    fc.tuple(fc.constant('watch'), fc.constantFrom('1', 'true', 'false', '0', '', 'FALSE', 'yes')),
    fc.tuple(fc.constant('limit'), fc.constantFrom('5', '500', 'x', '')),
    fc.tuple(fc.constant('labelSelector'), fc.constantFrom('app=web', 'app in (a,b)', '!app', 'tier!=db')),
    fc.tuple(fc.constant('resourceVersion'), fc.constantFrom('0', '')),
    fc.tuple(fc.constant('timeoutSeconds'), fc.constantFrom('1', '2')),
    fc.tuple(fc.constantFrom('pretty', 'foo', 'fieldselector'), fc.constantFrom('true', 'bar')),
  );
  // How a pair is written: encoded fully, minimally, with `+` for spaces, mixed hex, or hostile.
  const written = pair.chain(([k, v]) =>
    fc.constantFrom('full', 'full', 'full', 'minimal', 'minimal', 'minimal', 'plus', 'plus', 'bare', 'bare', 'badpct', 'semicolon').chain((how) => {
      if (how === 'full') return fc.constant(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
      if (how === 'minimal') return fc.constant(`${k}=${v.replace(/[%&#+; ]/g, (c) => pct(c, false))}`);
      if (how === 'plus') return fc.constant(`${k}=${encodeURIComponent(v).replace(/%20/g, '+')}`);
      if (how === 'bare') return fc.constant(v === '' ? k : `${k}=${v.replace(/[%&#+; ]/g, (c) => pct(c, true))}`);
      if (how === 'badpct') return fc.constant(`${k}=${encodeURIComponent(v)}%zz`);
      return fc.constant(`${k}=${encodeURIComponent(v)};x=1`);
    }),
  );
  const query = fc.array(written, { maxLength: 4 }).chain((pairs) =>
    fc.constantFrom('&', '&', '&', '&&').map((sep) => (pairs.length ? `?${pairs.join(sep)}` : '')),
  );
  return fc.tuple(pathOf, query).map(([p, q]) => p + q);
}
