// Ephemeral containers added to running pods (`kubectl debug`): golden cases through
// the webhook, with AdmissionReviews shaped exactly like a Kubernetes ≥ 1.22 API
// server's for an UPDATE of pods/ephemeralcontainers (the whole Pod as object and
// oldObject), and through the pure function. The older EphemeralContainers shape
// (1.20–1.21, alpha) is checked here with fixtures and in test/e2e against the real
// 1.20 API server, which is what sends it.

import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { parse, stringify } from 'yaml';
import jsonpatch from 'fast-json-patch';
import { startWebhookServer } from '../../injector/webhook-server.js';
import type { WebhookServer } from '../../injector/webhook-server.js';
import { mutateEphemeralContainers } from '../../injector/ephemeral.js';
import type { MutationResult } from '../../injector/mutate.js';
import { createLogger } from '../../core/log.js';
import type { Container, Pod } from '../../injector/pod-types.js';
import { GOLDEN_DIR, GOLDEN_VERSION, goldenConfig, checkGolden, makeCert, httpsClient } from './support.js';
import type { TestCert } from './support.js';

const log = createLogger('injector-test', 'silent');
const DIR = path.join(GOLDEN_DIR, 'ephemeral');
const USER = {
  username: 'alice@example.com',
  uid: 'c0ffee00-0000-4000-8000-000000000001',
  groups: ['sre', 'system:authenticated'],
};

/** A stored pod, as the API server hands it back: server-set metadata and a status. */
function stored(pod: Pod): Pod {
  const p = structuredClone(pod);
  p.metadata = { ...p.metadata, name: p.metadata!.name ?? `${p.metadata!.generateName}q7x2m`, uid: '6f1c2c4e-2b0a-4f7e-9d59-7b0c5d3e8a21', resourceVersion: '48213', creationTimestamp: '2026-01-05T10:00:00Z' as never };
  p.status = { phase: 'Running', podIP: '10.244.1.17', startTime: '2026-01-05T10:00:01Z' as never };
  return p;
}

interface Case { name: string; old: Pod; object: Pod }

function loadCase(file: string): Case {
  const spec = parse(readFileSync(path.join(DIR, file), 'utf8')) as { old: string; existing?: string; add: Container[] };
  const old = stored(parse(readFileSync(path.join(GOLDEN_DIR, spec.old), 'utf8')) as Pod);
  if (spec.existing) old.spec!.ephemeralContainers = (parse(readFileSync(path.join(GOLDEN_DIR, spec.existing), 'utf8')) as { ephemeralContainers: never[] }).ephemeralContainers;
  const object = structuredClone(old);
  object.spec!.ephemeralContainers = [...(old.spec!.ephemeralContainers ?? []), ...(spec.add as never[])];
  return { name: file.slice(0, -'.in.yaml'.length), old, object };
}

/** An AdmissionReview exactly as kube-apiserver ≥ 1.22 sends it for `kubectl debug` (a PATCH of the subresource, admitted as UPDATE). */
export function ephemeralReview(object: unknown, oldObject: unknown, kind = 'Pod'): Record<string, unknown> {
  const pod = object as Pod;
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind },
      resource: { group: '', version: 'v1', resource: 'pods' },
      subResource: 'ephemeralcontainers',
      requestKind: { group: '', version: 'v1', kind },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      requestSubResource: 'ephemeralcontainers',
      name: pod.metadata?.name ?? '',
      namespace: pod.metadata?.namespace ?? 'agents',
      operation: 'UPDATE',
      userInfo: USER,
      object,
      oldObject,
      dryRun: false,
      options: { kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1', fieldManager: 'kubectl-debug' },
    },
  };
}

function render(r: MutationResult): string {
  if (r.action === 'refuse') return stringify({ refused: r.message }, { lineWidth: 0 });
  if (r.action === 'skip') return stringify({ skipped: true });
  return stringify({ ephemeralContainers: r.pod.spec!.ephemeralContainers }, { lineWidth: 0, aliasDuplicateObjects: false, sortMapEntries: true });
}

describe('injector: ephemeral containers (UPDATE of pods/ephemeralcontainers)', () => {
  let cert: TestCert;
  let server: WebhookServer;
  let client: ReturnType<typeof httpsClient>;
  const cfg = goldenConfig(false);

  before(async () => {
    cert = makeCert();
    server = await startWebhookServer({ config: cfg, certFile: cert.certFile, keyFile: cert.keyFile, host: '127.0.0.1', port: 0, log, version: GOLDEN_VERSION });
    client = httpsClient(cert.cert);
  });
  after(async () => {
    await client.close();
    await server.close();
    cert.cleanup();
  });

  const post = async (review: Record<string, unknown>) => (await client.post(`https://127.0.0.1:${server.port}/mutate`, JSON.stringify(review))).json().response;

  // token-mount first: second-debugger reads its golden output.
  const files = readdirSync(DIR).filter((f) => f.endsWith('.in.yaml')).sort((a, b) => Number(b.startsWith('token-mount')) - Number(a.startsWith('token-mount')) || a.localeCompare(b));
  for (const file of files) {
    const name = file.slice(0, -'.in.yaml'.length);
    describe(name, () => {
      it('the webhook answers with a patch of spec.ephemeralContainers alone that gives the golden containers', async () => {
        const c = loadCase(file);
        const r = await post(ephemeralReview(c.object, c.old));
        let outcome: MutationResult;
        if (!r.allowed) {
          expect(r.status.code).to.equal(403);
          outcome = { action: 'refuse', message: r.status.message };
        } else if (r.patch === undefined) {
          outcome = { action: 'skip', reason: '' };
        } else {
          const ops = JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8')) as { path: string }[];
          // Anything else would be refused by the API server: the subresource changes only these.
          expect(ops.every((o) => o.path.startsWith('/spec/ephemeralContainers')), JSON.stringify(ops)).to.equal(true);
          const pod = jsonpatch.applyPatch(structuredClone(c.object), ops as never, true, false).newDocument as Pod;
          outcome = { action: 'inject', pod, warnings: r.warnings ?? [] };
        }
        const actual = render(outcome);
        expect(actual).to.equal(checkGolden(path.join(DIR, `${name}.out.yaml`), actual));
      });

      it('the pure function gives the golden containers', () => {
        const c = loadCase(file);
        expect(render(mutateEphemeralContainers(c.object, c.old, cfg, { namespace: 'agents' }))).to.equal(readFileSync(path.join(DIR, `${name}.out.yaml`), 'utf8'));
      });
    });
  }

  describe('a second debug session', () => {
    it('leaves the stored ephemeral containers as they were', () => {
      const c = loadCase('second-debugger.in.yaml');
      const r = mutateEphemeralContainers(c.object, c.old, cfg);
      expect(r.action).to.equal('inject');
      expect((r as { pod: Pod }).pod.spec!.ephemeralContainers![0]).to.deep.equal(c.old.spec!.ephemeralContainers![0]);
    });
  });

  describe('the EphemeralContainers object of Kubernetes 1.20–1.21 (alpha), as the real 1.20 server sends it', () => {
    const legacy = (containers: unknown[], old: unknown[] = []) => {
      const meta = { name: 'agent-7d9f8b6c5-q7x2m', namespace: 'agents', uid: '6f1c2c4e-2b0a-4f7e-9d59-7b0c5d3e8a21', resourceVersion: '48213', creationTimestamp: '2026-01-05T10:00:00Z' };
      return ephemeralReview({ kind: 'EphemeralContainers', apiVersion: 'v1', metadata: meta, ephemeralContainers: containers }, { kind: 'EphemeralContainers', apiVersion: 'v1', metadata: meta, ephemeralContainers: old }, 'EphemeralContainers');
    };
    const debug = (extra: Record<string, unknown> = {}) => ({ name: 'debugger', image: 'busybox:1.36', targetContainerName: 'agent', terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', imagePullPolicy: 'IfNotPresent', resources: {}, ...extra });

    it('refuses a new ephemeral container that mounts a volume: without the pod\'s volumes nothing tells a token volume from another', async () => {
      const r = await post(legacy([debug({ volumeMounts: [{ name: 'kube-api-access-x7k2p', mountPath: '/stolen' }] })]));
      expect(r.allowed).to.equal(false);
      expect(r.status.message).to.equal(
        "agentgate refuses ephemeral containers for pod agents/agent-7d9f8b6c5-q7x2m: ephemeral container 'debugger' mounts volume 'kube-api-access-x7k2p', and this API server (before Kubernetes 1.22) sends the EphemeralContainers object, without the pod's labels or volumes, so agentgate cannot tell whether the pod is an agent or which volumes carry its real token; debug without volumeMounts",
      );
    });

    it('refuses a new privileged ephemeral container and one that reads a Secret not on the allow-list', async () => {
      expect((await post(legacy([debug({ securityContext: { privileged: true } })]))).status.message).to.match(/ephemeral container 'debugger' is privileged/);
      const r = await post(legacy([debug({ envFrom: [{ secretRef: { name: 'agent-robot' } }] })]));
      expect(r.status.message).to.match(/ephemeral container 'debugger' \(envFrom\) references Secret 'agent-robot', which is not in the injector config's allowedSecrets/);
    });

    it('allows a new ephemeral container without volume mounts, and one that mounts only the identity volume', async () => {
      expect(await post(legacy([debug()]))).to.deep.include({ allowed: true });
      expect(await post(legacy([debug({ volumeMounts: [{ name: 'agentgate-identity', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }] })]))).to.deep.include({ allowed: true });
    });

    it('judges only the containers the request adds (those already stored cannot change)', async () => {
      const before = debug({ name: 'old-one', volumeMounts: [{ name: 'data', mountPath: '/data' }] });
      expect(await post(legacy([before, debug()], [before]))).to.deep.include({ allowed: true });
    });

    it('refuses a pods/ephemeralcontainers review of a kind it does not know', async () => {
      const review = legacy([debug()]);
      (review.request as Record<string, unknown>).kind = { group: '', version: 'v2', kind: 'EphemeralContainers' };
      const r = (await client.post(`https://127.0.0.1:${server.port}/mutate`, JSON.stringify(review))).json().response;
      expect(r.allowed).to.equal(false);
      expect(r.status.code).to.equal(400);
    });
  });
});
