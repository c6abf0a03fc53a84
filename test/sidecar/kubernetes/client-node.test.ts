// An unmodified in-cluster client: @kubernetes/client-node's loadFromCluster() with
// KUBERNETES_SERVICE_HOST/PORT pointing at the proxy and the service-account files
// the proxy wrote (under a path prefix, as loadFromCluster allows).
// API server: the DOUBLE (test/support/kube-api-double.ts).
// client-node caches the token file for 60 s in one process-wide authenticator, so
// this file uses a single proxy for all its tests.

import { expect } from 'chai';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { PAN, PAN_MASKED, startHarness } from './harness.js';
import type { Harness } from './harness.js';

const SA_PATH = 'var/run/secrets/kubernetes.io/serviceaccount';

describe('kubernetes proxy with @kubernetes/client-node loadFromCluster() (API server: the double)', function () {
  this.timeout(30_000);
  let h: Harness;
  let prefix: string;
  let kc: k8s.KubeConfig;
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };

  before(async () => {
    const os = await import('node:os');
    const { mkdtemp } = await import('node:fs/promises');
    prefix = await mkdtemp(path.join(os.tmpdir(), 'agentgate-incluster-'));
    h = await startHarness({ config: { identityDir: path.join(prefix, SA_PATH) } });
    h.double.put('namespaces', { metadata: { name: 'payments' } });
    h.double.put('configmaps', { metadata: { name: 'cards', namespace: 'payments' }, data: { note: `card ${PAN}` } });
    h.double.put('secrets', { metadata: { name: 'card-secret', namespace: 'payments' }, data: { pan: Buffer.from(PAN).toString('base64') }, stringData: undefined });
    h.double.put('pods', { metadata: { name: 'debug-0', namespace: 'payments' } });
    const [host, port] = [h.proxy.address.replace(/:\d+$/, ''), h.proxy.address.split(':').pop()!];
    process.env.KUBERNETES_SERVICE_HOST = host;
    process.env.KUBERNETES_SERVICE_PORT = port;
    kc = new k8s.KubeConfig();
    kc.loadFromCluster(prefix);
  });
  after(async () => {
    process.env.KUBERNETES_SERVICE_HOST = saved.host;
    process.env.KUBERNETES_SERVICE_PORT = saved.port;
    if (saved.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    if (saved.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
    await h?.stop();
    const { rm } = await import('node:fs/promises');
    await rm(prefix, { recursive: true, force: true });
  });

  it('reads the namespace the proxy wrote', () => {
    expect(kc.getContextObject(kc.getCurrentContext())?.namespace).to.equal('payments');
  });

  it('lists ConfigMaps with the PAN masked', async () => {
    const api = kc.makeApiClient(k8s.CoreV1Api);
    const list = await api.listNamespacedConfigMap({ namespace: 'payments' });
    expect(list.items.map((i) => i.data?.note)).to.deep.equal([`card ${PAN_MASKED}`]);
  });

  it('reads a Secret with its base64 value masked', async () => {
    const api = kc.makeApiClient(k8s.CoreV1Api);
    const s = await api.readNamespacedSecret({ namespace: 'payments', name: 'card-secret' });
    expect(Buffer.from(s.data!.pan!, 'base64').toString()).to.equal(PAN_MASKED);
  });

  it('gets a 403 ApiException with the Status for a denied delete', async () => {
    const api = kc.makeApiClient(k8s.CoreV1Api);
    const err = await api.deleteNamespacedConfigMap({ namespace: 'payments', name: 'cards' }).then(
      () => undefined,
      (e: k8s.ApiException<string>) => e,
    );
    expect(err?.code).to.equal(403);
    expect(JSON.parse(err!.body).reason).to.equal('Forbidden');
  });

  it('watches ConfigMaps and gets each event masked', async () => {
    const seen: [string, string | undefined][] = [];
    const w = new k8s.Watch(kc);
    const ctl = await w.watch('/api/v1/namespaces/payments/configmaps', {}, (type, obj: k8s.V1ConfigMap) => seen.push([type, obj.data?.note]), () => undefined);
    await until(() => seen.length >= 1);
    h.double.put('configmaps', { metadata: { name: 'cards', namespace: 'payments' }, data: { note: 'now 378282246310005' } });
    await until(() => seen.length >= 2);
    ctl.abort();
    expect(seen).to.deep.equal([
      ['ADDED', `card ${PAN_MASKED}`],
      ['MODIFIED', 'now ***********0005'],
    ]);
  });

  it('keeps working across a token rotation mid-session (the cached token is in its grace period)', async () => {
    const api = kc.makeApiClient(k8s.CoreV1Api);
    await api.listNamespacedConfigMap({ namespace: 'payments' });
    await h.proxy.rotateToken();
    const list = await api.listNamespacedConfigMap({ namespace: 'payments' });
    expect(list.items).to.have.length(1);
  });

  it('execs over WebSocket with stdout masked', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const done = new Promise<k8s.V1Status>((resolve) => {
      void new k8s.Exec(kc).exec('payments', 'debug-0', 'main', ['echo', PAN], out, null, null, false, (s) => resolve(s));
    });
    h.double.put('pods', { metadata: { name: 'debug-0', namespace: 'payments' } });
    // debug-0 is not in the exec rule of TEST_POLICY for client-node? It is: exec-in-debug-pod.
    const st = await done;
    expect(st.status).to.equal('Success');
    await until(() => text.length > 0);
    expect(text).to.equal(`${PAN_MASKED}\n`);
  });
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
