// What the agent gets back through the sidecar from the REAL kube-apiserver v1.20.2, where
// the shape of the answer is the server's own: list items without `kind`, Tables with
// `includeObject`, watch events, ConfigMap binaryData, annotations, Events and Status
// objects. The sidecar runs in this process (tests/sidecar/kubernetes harness) and forwards
// with the cluster's admin token; the agent side is raw HTTPS, client-node and kubectl.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
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
});
