// The webhook over real HTTPS: AdmissionReviews shaped like kube-apiserver's,
// every kind of bad input answered with an AdmissionReview, health endpoints,
// metrics, and the serving certificate reloaded without a restart.

import { expect } from 'chai';
import tls from 'node:tls';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/ports.js';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { startWebhookServer } from '../../injector/webhook-server.js';
import type { WebhookServer } from '../../injector/webhook-server.js';
import { registry } from '../../core/metrics.js';
import { createLogger } from '../../core/log.js';
import type { Pod } from '../../injector/pod-types.js';
import { GOLDEN_DIR, GOLDEN_VERSION, admissionReview, goldenConfig, httpsClient, makeCert, writeCertPair } from './support.js';
import type { TestCert } from './support.js';

const log = createLogger('injector-test', 'silent');
const plain = () => parse(readFileSync(path.join(GOLDEN_DIR, 'plain.in.yaml'), 'utf8')) as Pod;

async function counterValue(result: string): Promise<number> {
  const m = registry.getSingleMetric('agentgate_injector_admissions_total');
  const v = (await m!.get()).values.find((x) => x.labels.result === result);
  return v?.value ?? 0;
}

function peerFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca }, () => {
      const fp = s.getPeerX509Certificate()!.fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

describe('injector webhook over HTTPS', () => {
  let cert: TestCert;
  let server: WebhookServer;
  let client: ReturnType<typeof httpsClient>;
  let url: string;

  before(async () => {
    cert = makeCert();
    server = await startWebhookServer({ config: goldenConfig(false), certFile: cert.certFile, keyFile: cert.keyFile, host: '127.0.0.1', port: 0, log, version: GOLDEN_VERSION, reloadIntervalMs: 100 });
    client = httpsClient(cert.cert);
    url = `https://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await client.close();
    await server.close();
    cert.cleanup();
  });

  it('answers a pod CREATE with the same uid and a base64 JSONPatch', async () => {
    const review = admissionReview(plain(), { uid: '705ab4f5-6393-11e8-b7cc-42010a800002' });
    const res = await client.post(`${url}/mutate?timeout=5s`, JSON.stringify(review));
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.equal('application/json');
    const r = res.json().response;
    expect(r.uid).to.equal('705ab4f5-6393-11e8-b7cc-42010a800002');
    expect(r.allowed).to.equal(true);
    expect(r.patchType).to.equal('JSONPatch');
    const ops = JSON.parse(Buffer.from(r.patch, 'base64').toString());
    expect(ops).to.be.an('array').that.is.not.empty;
    expect(ops.every((o: { op: string; path: string }) => ['add', 'remove', 'replace'].includes(o.op) && o.path.startsWith('/'))).to.equal(true);
  });

  it('gives a dry-run request the same patch as a real one (the mutation has no side effects)', async () => {
    const pod = plain();
    const real = (await client.post(`${url}/mutate`, JSON.stringify(admissionReview(pod, { uid: 'a' })))).json().response;
    const dry = (await client.post(`${url}/mutate`, JSON.stringify(admissionReview(pod, { uid: 'b', dryRun: true })))).json().response;
    expect(dry.uid).to.equal('b');
    expect(dry.patch).to.equal(real.patch);
  });

  it('answers an admission.k8s.io/v1beta1 review in v1beta1', async () => {
    const res = await client.post(`${url}/mutate`, JSON.stringify(admissionReview(plain(), { uid: 'c', apiVersion: 'admission.k8s.io/v1beta1' })));
    const body = res.json();
    expect(body.apiVersion).to.equal('admission.k8s.io/v1beta1');
    expect(body.response.uid).to.equal('c');
    expect(body.response.patchType).to.equal('JSONPatch');
  });

  it('returns warnings for classic mode with init containers', async () => {
    const pod = parse(readFileSync(path.join(GOLDEN_DIR, 'init-containers.in.yaml'), 'utf8')) as Pod;
    pod.metadata!.annotations = { 'agentgate.dev/native-sidecar': 'false' };
    const r = (await client.post(`${url}/mutate`, JSON.stringify(admissionReview(pod)))).json().response;
    expect(r.allowed).to.equal(true);
    expect(r.warnings).to.deep.equal([
      'agentgate: classic sidecar mode: init containers (fetch-model, migrate) run before the proxy starts and have no Kubernetes or database access',
    ]);
  });

  it('allows a pod labeled disabled without a patch when its namespace may opt out', async () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    pod.metadata!.namespace = 'platform';
    const r = (await client.post(`${url}/mutate`, JSON.stringify(admissionReview(pod, { uid: 'd' })))).json().response;
    expect(r).to.deep.equal({ uid: 'd', allowed: true });
  });

  it('refuses a pod labeled disabled whose namespace and service account may not opt out', async () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    const r = (await client.post(`${url}/mutate`, JSON.stringify(admissionReview(pod, { uid: 'e' })))).json().response;
    expect(r.allowed).to.equal(false);
    expect(r.status.code).to.equal(403);
    expect(r.status.message).to.match(/^agentgate refuses pod agents\/agent-7d9f8b6c5-\*: it is labeled agentgate.dev\/inject=disabled in a namespace that is opted in/);
  });

  it('judges the opt-out by the request\'s namespace when the pod being created carries none', async () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    delete pod.metadata!.namespace;
    const review = admissionReview(pod, { uid: 'f' });
    (review.request as { namespace: string }).namespace = 'platform';
    const r = (await client.post(`${url}/mutate`, JSON.stringify(review))).json().response;
    expect(r).to.deep.equal({ uid: 'f', allowed: true });
  });

  it('injects an unlabeled pod: it was sent here by the namespace entry of the webhook configuration', async () => {
    const pod = plain();
    delete pod.metadata!.labels!['agentgate.dev/inject'];
    const r = (await client.post(`${url}/mutate`, JSON.stringify(admissionReview(pod)))).json().response;
    expect(r.patchType).to.equal('JSONPatch');
  });

  it('allows objects it does not handle unchanged (a Deployment, a pod UPDATE that leaves the proxy alone, a CREATE of a subresource)', async () => {
    const dep = admissionReview(plain(), { uid: 'e' }) as { request: Record<string, unknown> };
    dep.request.kind = { group: 'apps', version: 'v1', kind: 'Deployment' };
    dep.request.resource = { group: 'apps', version: 'v1', resource: 'deployments' };
    expect((await client.post(`${url}/mutate`, JSON.stringify(dep))).json().response).to.deep.equal({ uid: 'e', allowed: true });
    const upd = admissionReview(plain(), { uid: 'f' }) as { request: Record<string, unknown> };
    upd.request.operation = 'UPDATE';
    upd.request.oldObject = plain();
    expect((await client.post(`${url}/mutate`, JSON.stringify(upd))).json().response).to.deep.equal({ uid: 'f', allowed: true });
    const sub = admissionReview(plain(), { uid: 'g' }) as { request: Record<string, unknown> };
    sub.request.subResource = 'ephemeralcontainers';
    expect((await client.post(`${url}/mutate`, JSON.stringify(sub))).json().response).to.deep.equal({ uid: 'g', allowed: true });
  });

  describe('a pod UPDATE (container images are the one thing it can change)', () => {
    const injectedPod = () => parse(readFileSync(path.join(GOLDEN_DIR, 'plain.out.yaml'), 'utf8')) as Pod;
    const update = (object: Pod, oldObject: Pod, uid: string) => {
      const r = admissionReview(object, { uid }) as { request: Record<string, unknown> };
      r.request.operation = 'UPDATE';
      r.request.oldObject = oldObject;
      r.request.options = { kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1' };
      return r;
    };

    it('refuses swapping the proxy\'s image, even when the same update opts the pod out', async () => {
      const old = injectedPod();
      const swapped = injectedPod();
      swapped.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
      swapped.spec!.initContainers![0].image = 'registry.example/token-dumper:1';
      const r = (await client.post(`${url}/mutate`, JSON.stringify(update(swapped, old, 'u1')))).json().response;
      expect(r.allowed).to.equal(false);
      expect(r.status.message).to.equal(
        'agentgate refuses this update of pod agents/agent-7d9f8b6c5-*: it changes the image of the agentgate-proxy container (registry.example/agentgate:0.1.0 → registry.example/token-dumper:1), which holds the pod\'s real credentials; recreate the pod to change the proxy',
      );
    });

    it('allows a new image for an agent container', async () => {
      const old = injectedPod();
      const bumped = injectedPod();
      bumped.spec!.containers[0].image = 'registry.example/agent:1.5';
      expect((await client.post(`${url}/mutate`, JSON.stringify(update(bumped, old, 'u2')))).json().response).to.deep.equal({ uid: 'u2', allowed: true });
    });
  });

  it('denies an opted-in pod it cannot patch safely, with the reason', async () => {
    const review = admissionReview(plain(), { uid: 'h' }) as { request: { object: Record<string, unknown> } };
    (review.request.object.spec as Record<string, unknown>).containers = 'agent';
    const res = await client.post(`${url}/mutate`, JSON.stringify(review));
    expect(res.status).to.equal(200);
    expect(res.json().response).to.deep.equal({
      uid: 'h',
      allowed: false,
      status: { status: 'Failure', code: 403, reason: 'Forbidden', message: 'agentgate cannot inject its proxy into this pod: spec.containers: expected a non-empty list' },
    });
  });

  it('denies a pod CREATE whose object is null (fail closed)', async () => {
    const review = admissionReview(plain(), { uid: 'j' }) as { request: Record<string, unknown> };
    review.request.object = null;
    const r = (await client.post(`${url}/mutate`, JSON.stringify(review))).json().response;
    expect(r.allowed).to.equal(false);
    expect(r.status.message).to.equal('agentgate cannot inject its proxy into this pod: the object is not a JSON object');
  });

  it('answers a body that is not JSON with a 400 AdmissionReview', async () => {
    const res = await client.post(`${url}/mutate`, '{"kind": "AdmissionRev');
    expect(res.status).to.equal(400);
    const body = res.json();
    expect(body.kind).to.equal('AdmissionReview');
    expect(body.response.allowed).to.equal(false);
    expect(body.response.status.message).to.match(/^agentgate injector: the request body is not JSON/);
  });

  it('answers JSON that is not an AdmissionReview with a 400 AdmissionReview', async () => {
    const res = await client.post(`${url}/mutate`, JSON.stringify({ kind: 'Pod', apiVersion: 'v1' }));
    expect(res.status).to.equal(400);
    expect(res.json().response.status.message).to.equal('agentgate injector: the request body is not an AdmissionReview');
  });

  it('refuses an unknown AdmissionReview version, keeping the uid', async () => {
    const res = await client.post(`${url}/mutate`, JSON.stringify(admissionReview(plain(), { uid: 'i', apiVersion: 'admission.k8s.io/v2' })));
    expect(res.status).to.equal(400);
    const r = res.json().response;
    expect(r.uid).to.equal('i');
    expect(r.allowed).to.equal(false);
    expect(r.status.message).to.equal("agentgate injector: unsupported AdmissionReview apiVersion 'admission.k8s.io/v2' (supported: admission.k8s.io/v1)");
  });

  it('refuses a review without request.uid', async () => {
    const review = admissionReview(plain()) as { request: Record<string, unknown> };
    delete review.request.uid;
    const res = await client.post(`${url}/mutate`, JSON.stringify(review));
    expect(res.status).to.equal(400);
    expect(res.json().response.status.message).to.equal('agentgate injector: the AdmissionReview has no request or no request.uid');
  });

  it('answers GET /mutate with 405 and a review body, unknown paths with 404', async () => {
    const g = await client.get(`${url}/mutate`);
    expect(g.status).to.equal(405);
    expect(g.json().response.status.message).to.equal('agentgate injector: /mutate takes POST, not GET');
    const n = await client.get(`${url}/validate`);
    expect(n.status).to.equal(404);
    expect(n.json().kind).to.equal('AdmissionReview');
  });

  it('answers a body over 4 MiB with 413 and a review body', async () => {
    const res = await client.post(`${url}/mutate`, Buffer.alloc(5 * 1024 * 1024, 0x20));
    expect(res.status).to.equal(413);
    expect(res.json().response.status.message).to.equal('agentgate injector: request body over 4194304 bytes');
  });

  it('serves /healthz and /readyz', async () => {
    expect((await client.get(`${url}/healthz`)).status).to.equal(200);
    const r = await client.get(`${url}/readyz`);
    expect(r.status).to.equal(200);
    expect(r.text).to.equal('ok\n');
  });

  it('counts admissions by result and observes latency', async () => {
    const before = await counterValue('injected');
    const refusedBefore = await counterValue('refused');
    await client.post(`${url}/mutate`, JSON.stringify(admissionReview(plain())));
    const host = plain();
    host.spec!.hostNetwork = true;
    await client.post(`${url}/mutate`, JSON.stringify(admissionReview(host)));
    expect(await counterValue('injected')).to.equal(before + 1);
    expect(await counterValue('refused')).to.equal(refusedBefore + 1);
    const text = await registry.metrics();
    expect(text).to.match(/^agentgate_injector_admission_duration_seconds_count \d+$/m);
    expect(text).to.match(/^agentgate_injector_certificate_expiry_timestamp_seconds \d+/m);
  });

  it('serves a rotated certificate to new connections without a restart', async () => {
    const first = await peerFingerprint(server.port, cert.cert);
    // Rotate the way a Secret volume does: write elsewhere, then rename into place.
    const tmpCrt = path.join(cert.dir, 'new.crt');
    const tmpKey = path.join(cert.dir, 'new.key');
    writeCertPair(tmpCrt, tmpKey, 'agentgate-injector-rotated');
    const newCert = readFileSync(tmpCrt, 'utf8');
    renameSync(tmpKey, cert.keyFile);
    renameSync(tmpCrt, cert.certFile);
    await server.reloadNow();
    const second = await peerFingerprint(server.port, newCert);
    expect(second).to.not.equal(first);
    expect(second).to.equal(server.certificate().fingerprint);
    // Clients that trust only the new certificate can now call /mutate.
    const c2 = httpsClient(newCert);
    try {
      expect((await c2.get(`${url}/healthz`)).status).to.equal(200);
    } finally {
      await c2.close();
    }
    cert.cert = newCert;
  });

  it('keeps serving the previous certificate while the new pair does not match', async () => {
    const before = server.certificate().fingerprint;
    const other = makeCert();
    try {
      // Only the certificate is replaced: the key on disk does not belong to it.
      writeFileSync(cert.certFile, readFileSync(other.certFile));
      await server.reloadNow();
      expect(server.certificate().fingerprint).to.equal(before);
      expect(await peerFingerprint(server.port, cert.cert)).to.equal(before);
      // The key arrives: now the pair is applied.
      writeFileSync(cert.keyFile, readFileSync(other.keyFile));
      await server.reloadNow();
      expect(await peerFingerprint(server.port, other.cert)).to.not.equal(before);
    } finally {
      other.cleanup();
    }
  });
});

describe('agentgate injector (the binary)', () => {
  const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cli/main.js');

  it('serves /mutate and /metrics, and exits 0 on SIGTERM', async function () {
    this.timeout(30000);
    const cert = makeCert();
    const [port, metrics] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, [MAIN, 'injector', '--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--listen', `127.0.0.1:${port}`, '--metrics', `127.0.0.1:${metrics}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, AGENTGATE_LOG_LEVEL: 'warn' },
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const client = httpsClient(cert.cert);
    try {
      let up = false;
      for (let i = 0; i < 100 && !up; i++) {
        up = await client.get(`https://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false);
        if (!up) await new Promise((r) => setTimeout(r, 100));
      }
      expect(up, 'injector came up').to.equal(true);
      const r = await client.post(`https://127.0.0.1:${port}/mutate`, JSON.stringify(admissionReview(plain())));
      expect(r.json().response.patchType).to.equal('JSONPatch');
      const m = await fetch(`http://127.0.0.1:${metrics}/metrics`).then((x) => x.text());
      expect(m).to.match(/^agentgate_injector_admissions_total\{result="injected"\} 1$/m);
      expect(m).to.match(/^agentgate_process_resident_memory_bytes \d+/m);
    } finally {
      await client.close();
      child.kill('SIGTERM');
      expect(await exited).to.equal(0);
      cert.cleanup();
    }
  });

  it('exits 2 with one line when a required flag is missing', () => {
    const r = spawnSync(process.execPath, [MAIN, 'injector', '--tls-key', 'k'], { encoding: 'utf8' });
    expect(r.status).to.equal(2);
    expect(r.stderr).to.equal('agentgate injector: missing --tls-cert (see agentgate injector --help)\n');
  });

  it('exits 1 naming the file when the certificate cannot be read', () => {
    const r = spawnSync(process.execPath, [MAIN, 'injector', '--tls-cert', '/nonexistent/tls.crt', '--tls-key', '/nonexistent/tls.key', '--metrics', 'off'], { encoding: 'utf8' });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.equal("agentgate injector: ENOENT: no such file or directory, open '/nonexistent/tls.crt'\n");
  });
});
