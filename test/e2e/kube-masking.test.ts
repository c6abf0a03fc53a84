// What the agent gets back through the sidecar from the REAL kube-apiserver v1.20.2, where
// the shape of the answer is the server's own: list items without `kind`, Tables with
// `includeObject`, watch events, ConfigMap binaryData, annotations, Events and Status
// objects. The sidecar runs in this process (tests/sidecar/kubernetes harness) and forwards
// with the cluster's admin token; the agent side is raw HTTPS, client-node and kubectl.

import { readFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createServingIdentity } from '../../sidecar/kubernetes/tls-identity.js';
import { expect } from 'chai';
import * as k8s from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { sharedKubeCluster, stopSharedKubeCluster, type KubeCluster } from '../support/kube-cluster.js';
import { startHarness, KUBECTL_NEW, PAN, PAN_MASKED } from '../sidecar/kubernetes/harness.js';
import type { Harness } from '../sidecar/kubernetes/harness.js';
import type { KubeApiDouble } from '../support/kube-api-double.js';

after(stopSharedKubeCluster);

const NS = 'e2e-masking';
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

export const MASKING_POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: e2e-masking }
spec:
  default: deny
  masking: { pan: last4, secrets: mask }
  rules:
    - name: read
      kubernetes: { verbs: [get, list, watch], resources: ["*"], namespaces: ["*"] }
      action: allow
    - name: write
      kubernetes: { verbs: [create, update, patch], resources: [configmaps, secrets, events], namespaces: [${NS}] }
      action: allow
`;

/** The harness with the real API server where the double would be (it only reads url, token and caPem). */
export async function harnessOnCluster(cluster: KubeCluster, policy: string, config: Record<string, unknown> = {}): Promise<Harness> {
  const upstream = { url: cluster.server, token: cluster.adminToken, caPem: cluster.caPem, close: async () => undefined } as unknown as KubeApiDouble;
  return startHarness({ double: upstream, policy, config });
}

describe('kubernetes masking on the REAL kube-apiserver v1.20.2', function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let core: k8s.CoreV1Api;
  let h: Harness;
  let agent: Agent;
  let token: string;

  async function get(urlPath: string, accept = 'application/json'): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
    const res = await request(`https://${h.proxy.address}${urlPath}`, { dispatcher: agent, headers: { authorization: `Bearer ${token}`, accept } });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  before(async function () {
    this.timeout(60 * 60_000);
    cluster = await sharedKubeCluster();
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    await cluster.createNamespace(NS);
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'card-vault' }, type: 'Opaque', data: { pan: b64(`card ${PAN}\n`), user: b64('svc-payments') } },
    });
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: {
        metadata: {
          name: 'binary-cards',
          // last-applied spells the PAN of `note` with a JSON escape (\u0034 for 4).
          annotations: {
            'example.com/card': b64(PAN),
            [LAST_APPLIED]: `${JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'binary-cards', namespace: NS }, data: { cvv: '123', note: 'NOTE' }, binaryData: { blob: b64(PAN) } }).replace('NOTE', `card \\u0034${PAN.slice(1)}`)}\n`,
          },
        },
        data: { plain: 'nothing to hide' },
        binaryData: { blob: b64(`card ${PAN}`) },
      },
    });
    h = await harnessOnCluster(cluster, MASKING_POLICY);
    agent = new Agent({ connect: { ca: await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8') } });
    token = await h.token();
  });

  after(async () => {
    await agent?.close();
    await h?.stop();
  });

  describe('Secrets, masked by what the request names whatever the body says', () => {
    it('the API server leaves kind out of list items (what the masker must not rely on)', async () => {
      const list = (await core.listNamespacedSecret({ namespace: NS })) as unknown as { items: Record<string, unknown>[] };
      const raw = await request(`${cluster.server}/api/v1/namespaces/${NS}/secrets`, {
        dispatcher: new Agent({ connect: { ca: cluster.caPem } }),
        headers: { authorization: `Bearer ${cluster.adminToken}` },
      });
      const body = (await raw.body.json()) as { kind: string; items: Record<string, unknown>[] };
      expect(list.items.length).to.be.greaterThan(0);
      expect(body.kind).to.equal('SecretList');
      expect(body.items.map((i) => i.kind)).to.deep.equal(body.items.map(() => undefined));
    });

    it('a list masks the PAN inside every base64 value', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/secrets`);
      const item = (JSON.parse(r.text) as { items: { metadata: { name: string }; data: Record<string, string> }[] }).items.find((i) => i.metadata.name === 'card-vault')!;
      expect(unb64(item.data.pan!)).to.equal(`card ${PAN_MASKED}\n`);
      expect(unb64(item.data.user!)).to.equal('svc-payments');
    });

    it('kubectl get secrets -o yaml shows base64 that decodes to the masked PAN', async () => {
      const r = await h.kubectl(KUBECTL_NEW, ['get', 'secrets', '-n', NS, '-o', 'yaml']);
      expect(r.code, r.stderr).to.equal(0);
      const pan = /\n {4}pan: (\S+)/.exec(r.stdout)?.[1];
      expect(unb64(pan!)).to.equal(`card ${PAN_MASKED}\n`);
      expect(r.stdout).not.to.contain(b64(`card ${PAN}\n`));
    });

    it('a client-node list masks the PAN inside base64', async () => {
      const kc = new k8s.KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: `https://${h.proxy.address}`, caFile: path.join(h.identityDir, 'ca.crt') }],
        users: [{ name: 'u', token }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      const list = await kc.makeApiClient(k8s.CoreV1Api).listNamespacedSecret({ namespace: NS });
      const s = list.items.find((i) => i.metadata?.name === 'card-vault')!;
      expect(unb64(s.data!.pan!)).to.equal(`card ${PAN_MASKED}\n`);
    });

    it('a Table with includeObject=Object masks each row object', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/secrets?includeObject=Object`, 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json');
      const t = JSON.parse(r.text) as { kind: string; rows: { object: { metadata: { name: string }; data: Record<string, string> } }[] };
      expect(t.kind).to.equal('Table');
      const row = t.rows.find((x) => x.object.metadata.name === 'card-vault')!;
      expect(unb64(row.object.data.pan!)).to.equal(`card ${PAN_MASKED}\n`);
    });

    it('a watch masks every event', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/secrets?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dcard-vault`);
      const events = r.text.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: { data: Record<string, string> } });
      expect(events.map((e) => [e.type, unb64(e.object.data.pan!)])).to.deep.equal([['ADDED', `card ${PAN_MASKED}\n`]]);
    });

    it('a single get masks the value too', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/secrets/card-vault`);
      expect(unb64((JSON.parse(r.text) as { data: Record<string, string> }).data.pan!)).to.equal(`card ${PAN_MASKED}\n`);
    });
  });

  describe('ConfigMap binaryData and annotations', () => {
    type Cm = { metadata: { name: string; annotations: Record<string, string> }; binaryData: Record<string, string> };
    /** Each hiding place of the ConfigMap, decoded as the agent would. */
    function hidden(cm: Cm): Record<string, unknown> {
      const applied = JSON.parse(cm.metadata.annotations[LAST_APPLIED]!) as { data: Record<string, string>; binaryData: Record<string, string> };
      return {
        binaryData: unb64(cm.binaryData.blob!),
        annotation: unb64(cm.metadata.annotations['example.com/card']!),
        appliedCvv: applied.data.cvv,
        appliedNote: applied.data.note,
        appliedBinary: unb64(applied.binaryData.blob!),
      };
    }
    const MASKED = { binaryData: `card ${PAN_MASKED}`, annotation: PAN_MASKED, appliedCvv: '***', appliedNote: `card ${PAN_MASKED}`, appliedBinary: PAN_MASKED };

    it('a get masks binaryData, a base64 annotation and the copy in last-applied-configuration', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/configmaps/binary-cards`);
      expect(hidden(JSON.parse(r.text) as Cm)).to.deep.equal(MASKED);
    });

    it('a list masks them in every item', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/configmaps`);
      const item = (JSON.parse(r.text) as { items: Cm[] }).items.find((i) => i.metadata.name === 'binary-cards')!;
      expect(hidden(item)).to.deep.equal(MASKED);
    });

    it('a watch masks them in every event', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dbinary-cards`);
      const events = r.text.trim().split('\n').map((l) => JSON.parse(l) as { object: Cm });
      expect(events.map((e) => hidden(e.object))).to.deep.equal([MASKED]);
    });

    it('a Table with includeObject=Object masks them in the row object', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/configmaps?includeObject=Object&fieldSelector=metadata.name%3Dbinary-cards`, 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json');
      const t = JSON.parse(r.text) as { rows: { object: Cm }[] };
      expect(t.rows.map((x) => hidden(x.object))).to.deep.equal([MASKED]);
    });

    it('kubectl get -o yaml shows none of them in clear', async () => {
      const r = await h.kubectl(KUBECTL_NEW, ['get', 'configmap', 'binary-cards', '-n', NS, '-o', 'yaml']);
      expect(r.code, r.stderr).to.equal(0);
      for (const clear of [b64(PAN), b64(`card ${PAN}`), '"cvv":"123"', PAN]) expect(r.stdout).not.to.contain(clear);
    });
  });

  describe('response headers, Status messages and Events', () => {
    let webhook: https.Server | undefined;
    const WEBHOOK = 'agentgate-e2e-warning';

    before(async function () {
      // An admission webhook that warns with a card number, as a careless one might.
      const id = createServingIdentity();
      webhook = https.createServer({ key: id.keyPem, cert: id.certPem }, (req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          const review = JSON.parse(body) as { request: { uid: string } };
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true, warnings: [`refund card ${PAN} flagged`] } }));
        });
      });
      await new Promise<void>((r) => webhook!.listen(0, '127.0.0.1', r));
      const admission = cluster.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
      await admission.createValidatingWebhookConfiguration({
        body: {
          metadata: { name: WEBHOOK },
          webhooks: [
            {
              name: 'warn.agentgate.test',
              clientConfig: { url: `https://127.0.0.1:${(webhook.address() as AddressInfo).port}/`, caBundle: Buffer.from(id.caPem).toString('base64') },
              rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] }],
              objectSelector: { matchLabels: { 'agentgate.test/warn': 'yes' } },
              sideEffects: 'None',
              admissionReviewVersions: ['v1'],
              failurePolicy: 'Fail',
            },
          ],
        },
      });
      // The API server picks the configuration up asynchronously: wait until a dry run warns.
      const deadline = Date.now() + 20_000;
      for (let n = 0; ; n++) {
        const r = await request(`${cluster.server}/api/v1/namespaces/${NS}/configmaps?dryRun=All`, {
          method: 'POST',
          dispatcher: new Agent({ connect: { ca: cluster.caPem } }),
          headers: { authorization: `Bearer ${cluster.adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ metadata: { name: `probe-${n}`, labels: { 'agentgate.test/warn': 'yes' } } }),
        });
        await r.body.text();
        if (String(r.headers.warning ?? '').includes(PAN)) break;
        if (Date.now() > deadline) throw new Error('the warning webhook never answered');
        await new Promise((res) => setTimeout(res, 200));
      }
    });

    after(async () => {
      await cluster.kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api).deleteValidatingWebhookConfiguration({ name: WEBHOOK }).catch(() => undefined);
      await new Promise<void>((r) => (webhook ? webhook.close(() => r()) : r()));
    });

    it("masks an admission webhook's Warning header", async () => {
      const res = await request(`https://${h.proxy.address}/api/v1/namespaces/${NS}/configmaps`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ metadata: { name: 'warned', labels: { 'agentgate.test/warn': 'yes' } } }),
      });
      await res.body.text();
      expect(res.statusCode).to.equal(201);
      expect(res.headers.warning).to.equal(`299 - "refund card ${PAN_MASKED} flagged"`);
    });

    it('kubectl prints the masked warning', async () => {
      const r = await h.kubectl(KUBECTL_NEW, ['create', 'configmap', 'warned-kubectl', '-n', NS, '--dry-run=server', '-o', 'name']);
      expect(r.code, r.stderr).to.equal(0);
      // kubectl's own create has no label, so label it through a manifest instead.
      const m = await h.kubectl(KUBECTL_NEW, ['apply', '--validate=false', '-f', '-'], {
        input: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'warned-apply', namespace: NS, labels: { 'agentgate.test/warn': 'yes' } } }),
      });
      expect(m.stderr).to.contain(`Warning: refund card ${PAN_MASKED} flagged`);
      expect(m.stderr).not.to.contain(PAN);
    });

    it('passes only the headers a client reads, with its own Audit-Id', async () => {
      const r = await get(`/api/v1/namespaces/${NS}/configmaps/binary-cards`);
      expect(Object.keys(r.headers).sort()).to.deep.equal(['audit-id', 'cache-control', 'connection', 'content-length', 'content-type', 'date', 'keep-alive', 'x-kubernetes-pf-flowschema-uid', 'x-kubernetes-pf-prioritylevel-uid']);
    });

    it("masks the API server's Status message and details for an object named by a card number", async () => {
      const r = await get(`/api/v1/namespaces/${NS}/configmaps/${PAN}`);
      expect(r.status).to.equal(404);
      expect(JSON.parse(r.text)).to.deep.include({ message: `configmaps "${PAN_MASKED}" not found`, details: { name: PAN_MASKED, kind: 'configmaps' } });
    });

    it("masks the sidecar's own refusal Status for such a name", async () => {
      const res = await request(`https://${h.proxy.address}/api/v1/namespaces/${NS}/configmaps/${PAN}`, { method: 'DELETE', dispatcher: agent, headers: { authorization: `Bearer ${token}` } });
      const s = (await res.body.json()) as { message: string; details: { name: string } };
      expect(res.statusCode).to.equal(403);
      expect(s.message).to.contain(`configmaps "${PAN_MASKED}"`);
      expect(JSON.stringify(s)).not.to.contain(PAN);
      expect(s.details.name).to.equal(PAN_MASKED);
    });

    it('masks the message of an Event', async () => {
      await core.createNamespacedEvent({
        namespace: NS,
        body: { metadata: { name: 'card-event' }, involvedObject: { kind: 'ConfigMap', name: 'binary-cards', namespace: NS }, reason: 'Seen', message: `charged card ${PAN}`, type: 'Normal' },
      });
      const r = await h.kubectl(KUBECTL_NEW, ['get', 'events', '-n', NS, '--field-selector', 'reason=Seen', '-o', 'jsonpath={.items[*].message}']);
      expect(r.stdout).to.equal(`charged card ${PAN_MASKED}`);
    });
  });

  describe('the audit trail at RequestResponse level', () => {
    let rr: Harness;
    let rrToken: string;
    let rrAgent: Agent;
    const call = async (method: string, urlPath: string, body?: string, contentType = 'application/json') => {
      const res = await request(`https://${rr.proxy.address}${urlPath}`, {
        method: method as 'GET',
        dispatcher: rrAgent,
        headers: { authorization: `Bearer ${rrToken}`, ...(body ? { 'content-type': contentType } : {}) },
        ...(body ? { body } : {}),
      });
      return { status: res.statusCode, text: await res.body.text() };
    };
    const auditText = async () => {
      await rr.events();
      return readFile(rr.auditFile, 'utf8');
    };

    before(async () => {
      rr = await harnessOnCluster(cluster, MASKING_POLICY, { auditLevel: 'RequestResponse' });
      rrToken = await rr.token();
      rrAgent = new Agent({ connect: { ca: await readFile(path.join(rr.identityDir, 'ca.crt'), 'utf8') } });
    });
    after(async () => {
      await rrAgent?.close();
      await rr?.stop();
    });

    it('records a Secret create and list at Metadata level, without a body, masked or not', async () => {
      const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-login' }, stringData: { password: 'hunter2-db' }, data: { pan: b64(PAN) } };
      expect((await call('POST', `/api/v1/namespaces/${NS}/secrets`, JSON.stringify(secret))).status).to.equal(201);
      expect((await call('GET', `/api/v1/namespaces/${NS}/secrets`)).status).to.equal(200);
      const events = (await rr.events()).filter((e) => e.objectRef?.resource === 'secrets');
      expect(events.map((e) => [e.verb, e.level, e.requestObject, e.responseObject, e.annotations?.['agentgate.dev/bodies-omitted']])).to.deep.equal([
        ['create', 'Metadata', undefined, undefined, 'Secret bodies are never recorded'],
        ['list', 'Metadata', undefined, undefined, 'Secret bodies are never recorded'],
      ]);
      const text = await auditText();
      for (const clear of ['hunter2-db', b64('hunter2-db'), b64(PAN), b64(`card ${PAN}\n`)]) expect(text).not.to.contain(clear);
    });

    it('masks a server-side apply YAML body after parsing it: folded lines and \\u escapes', async () => {
      const yaml = [
        'apiVersion: v1',
        'kind: ConfigMap',
        `metadata: { name: folded, namespace: ${NS} }`,
        'data:',
        '  note: >-',
        '    card 4111',
        '    1111 1111 1111',
        `  esc: "card \\u0034${PAN.slice(1)}"`,
        '',
      ].join('\n');
      const r = await call('PATCH', `/api/v1/namespaces/${NS}/configmaps/folded?fieldManager=agent`, yaml, 'application/apply-patch+yaml');
      expect(r.status, r.text).to.equal(201);
      const ev = (await rr.events()).find((e) => e.objectRef?.name === 'folded' && e.verb === 'patch')!;
      expect((ev.requestObject as { data: unknown }).data).to.deep.equal({ note: 'card **** **** **** 1111', esc: `card ${PAN_MASKED}` });
      expect((ev.responseObject as { data: unknown }).data).to.deep.equal({ note: 'card **** **** **** 1111', esc: `card ${PAN_MASKED}` });
      expect(await auditText()).not.to.match(/4111\s+1111 1111 1111|\\u0034111/);
    });
  });
});
