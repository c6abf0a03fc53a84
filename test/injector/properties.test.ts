// Properties of the mutation over generated pods shaped like the API server's
// (ServiceAccount step applied): idempotence, no real token outside the sidecar,
// patches that apply cleanly, and pods the API server accepts.

import { expect } from 'chai';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { mutatePod } from '../../injector/mutate.js';
import { mutateEphemeralContainers } from '../../injector/ephemeral.js';
import { createPatch } from '../../injector/json-patch.js';
import { admitServiceAccount } from '../../injector/service-account-admission.js';
import { SA_PATH, SIDECAR_NAME, IDENTITY_VOLUME } from '../../injector/names.js';
import type { Container, Pod, Volume, VolumeMount } from '../../injector/pod-types.js';
import { goldenConfig, podProblems, credentialVolumeNames } from './support.js';

const ENV_NAMES = ['PGHOST', 'PGPORT', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'LOG_LEVEL', 'AGENTGATE_PAYMENTS_URL'];

const envArb = fc.uniqueArray(
  fc.record({ name: fc.constantFrom(...ENV_NAMES), value: fc.constantFrom('10.0.0.1', 'debug', '5432', '127.0.0.1') }),
  { selector: (e) => e.name, maxLength: 4 },
);

/** Mounts of user volumes; the ServiceAccount step adds the real-token mounts afterwards. */
const mountArb = fc.uniqueArray(
  fc.oneof(
    fc.constant<VolumeMount>({ name: 'scratch', mountPath: '/scratch' }),
    fc.constant<VolumeMount>({ name: 'own-token', mountPath: SA_PATH, readOnly: true }),
    fc.constant<VolumeMount>({ name: 'own-token', mountPath: '/etc/own-token', readOnly: true }),
    fc.constant<VolumeMount>({ name: 'legacy-token-ab2cd', mountPath: '/legacy', readOnly: true }),
    fc.constant<VolumeMount>({ name: 'scratch', mountPath: `${SA_PATH}/extra` }),
  ),
  { selector: (m) => m.mountPath, maxLength: 3 },
);

function containerArb(prefix: string, native: boolean) {
  return fc.record({
    env: envArb,
    mounts: mountArb,
    sidecar: native ? fc.boolean() : fc.constant(false),
  }).map(({ env, mounts, sidecar }) => (i: number): Container => ({
    name: `${prefix}-${i}`,
    image: 'registry.example/agent:1',
    ...(env.length ? { env } : {}),
    ...(mounts.length ? { volumeMounts: mounts } : {}),
    ...(sidecar ? { restartPolicy: 'Always' } : {}),
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    imagePullPolicy: 'IfNotPresent',
  }));
}

const podArb = fc
  .record({
    containers: fc.array(containerArb('c', false), { minLength: 1, maxLength: 3 }),
    init: fc.array(containerArb('i', true), { maxLength: 2 }),
    automount: fc.constantFrom(undefined, false),
    connections: fc.constantFrom(undefined, 'payments', 'ledger,payments'),
    nativeOverride: fc.constantFrom(undefined, 'false'),
    kubeAccess: fc.constantFrom(undefined, 'true', 'false'),
    job: fc.boolean(),
  })
  .map((r): Pod => {
    const volumes: Volume[] = [
      { name: 'scratch', emptyDir: {} },
      { name: 'own-token', secret: { secretName: 'ci-robot', defaultMode: 420 } },
      { name: 'legacy-token-ab2cd', secret: { secretName: 'legacy-token-ab2cd', defaultMode: 420 } },
    ];
    const annotations: Record<string, string> = {};
    if (r.connections) annotations['agentgate.dev/connections'] = r.connections;
    if (r.nativeOverride) annotations['agentgate.dev/native-sidecar'] = r.nativeOverride;
    if (r.kubeAccess) annotations['agentgate.dev/kubernetes-access'] = r.kubeAccess;
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'agent',
        namespace: 'agents',
        labels: { 'agentgate.dev/inject': 'enabled' },
        ...(Object.keys(annotations).length ? { annotations } : {}),
        ...(r.job ? { ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'j', uid: 'u' }] } : {}),
      },
      spec: {
        ...(r.init.length ? { initContainers: r.init.map((f, i) => f(i)) } : {}),
        containers: r.containers.map((f, i) => f(i)),
        ...(r.automount === false ? { automountServiceAccountToken: false } : {}),
        serviceAccountName: 'agent',
        volumes,
      },
    };
    return admitServiceAccount(pod, 'seed');
  });

// The generated pods mount the Secret 'ci-robot' at the service-account path (a token the
// proxy gets) or elsewhere (an app Secret): the second is allowed only when listed.
const configs = [goldenConfig(false), goldenConfig(true)].map((c) => ({ ...c, allowedSecrets: [...c.allowedSecrets, 'ci-robot'] }));
// Seeded: a failure names the same pods on every run.
const RUNS = { numRuns: 300, seed: 20261201 };

describe('injector mutation properties', () => {
  it('injecting an injected pod gives the same pod', () => {
    fc.assert(
      fc.property(podArb, fc.constantFrom(0, 1), (pod, ci) => {
        const once = mutatePod(pod, configs[ci]);
        if (once.action !== 'inject') return;
        const twice = mutatePod(once.pod, configs[ci]);
        expect(twice.action).to.equal('inject');
        expect((twice as { pod: Pod }).pod).to.deep.equal(once.pod);
      }),
      RUNS,
    );
  });

  it('no container but the sidecar can read a real token or a credential volume', () => {
    fc.assert(
      fc.property(podArb, fc.constantFrom(0, 1), (pod, ci) => {
        const r = mutatePod(pod, configs[ci]);
        if (r.action !== 'inject') return;
        const creds = credentialVolumeNames(r.pod);
        const spec = r.pod.spec!;
        const others = [...(spec.initContainers ?? []), ...spec.containers].filter((c) => c.name !== SIDECAR_NAME);
        expect(others.length).to.be.greaterThan(0);
        for (const c of others) {
          const mounts = c.volumeMounts ?? [];
          expect(mounts.filter((m) => creds.has(m.name)), `${c.name} mounts a credential volume`).to.deep.equal([]);
          expect(mounts.filter((m) => m.mountPath === SA_PATH || m.mountPath.startsWith(`${SA_PATH}/`))).to.deep.equal([
            { name: IDENTITY_VOLUME, mountPath: SA_PATH, readOnly: true },
          ]);
        }
      }),
      RUNS,
    );
  });

  it('a container another webhook adds later is rewritten on reinvocation', () => {
    fc.assert(
      fc.property(podArb, containerArb('late', false), (pod, late) => {
        const once = mutatePod(pod, configs[0]);
        if (once.action !== 'inject') return;
        const added = structuredClone(once.pod);
        added.spec!.containers.push(late(0));
        // The API server's ServiceAccount step runs again and mounts the real token into it.
        const admitted = admitServiceAccount(added, 'seed');
        const again = mutatePod(admitted, configs[0]);
        expect(again.action).to.equal('inject');
        const c = (again as { pod: Pod }).pod.spec!.containers.find((x) => x.name === 'late-0')!;
        const creds = credentialVolumeNames((again as { pod: Pod }).pod);
        expect((c.volumeMounts ?? []).filter((m) => creds.has(m.name))).to.deep.equal([]);
        expect(c.env?.find((e) => e.name === 'KUBERNETES_SERVICE_HOST')?.value).to.equal('127.0.0.1');
      }),
      RUNS,
    );
  });

  it('an ephemeral container added later (kubectl debug) reads no credential: rewritten like the others', () => {
    const tokenMount = fc.constantFrom<VolumeMount[]>([], [{ name: 'kube-api-access-8vkhm', mountPath: '/stolen' }], [{ name: 'kube-api-access-8vkhm', mountPath: SA_PATH }]);
    fc.assert(
      fc.property(podArb, containerArb('dbg', false), tokenMount, (pod, debug, extra) => {
        const once = mutatePod(pod, configs[0]);
        if (once.action !== 'inject') return;
        const old = once.pod;
        const d = debug(0);
        const taken = new Set((d.volumeMounts ?? []).map((m) => m.mountPath));
        d.volumeMounts = [...(d.volumeMounts ?? []), ...extra.filter((m) => !taken.has(m.mountPath) && (old.spec!.volumes ?? []).some((v) => v.name === m.name))];
        const object = structuredClone(old);
        object.spec!.ephemeralContainers = [d as never];
        const r = mutateEphemeralContainers(object, old, configs[0]);
        expect(r.action).to.equal('inject');
        const c = (r as { pod: Pod }).pod.spec!.ephemeralContainers![0] as Container;
        const creds = credentialVolumeNames(old);
        expect((c.volumeMounts ?? []).filter((m) => creds.has(m.name) || m.name.startsWith('agentgate-') && m.name !== IDENTITY_VOLUME)).to.deep.equal([]);
        expect((c.volumeMounts ?? []).filter((m) => m.mountPath === SA_PATH || m.mountPath.startsWith(`${SA_PATH}/`))).to.deep.equal([
          { name: IDENTITY_VOLUME, mountPath: SA_PATH, readOnly: true },
        ]);
        expect(c.env?.find((e) => e.name === 'KUBERNETES_SERVICE_HOST')?.value).to.equal('127.0.0.1');
      }),
      RUNS,
    );
  });

  it('every patch applies cleanly to its input and yields the mutated pod', () => {
    fc.assert(
      fc.property(podArb, fc.constantFrom(0, 1), (pod, ci) => {
        const r = mutatePod(pod, configs[ci]);
        if (r.action !== 'inject') return;
        const ops = createPatch(pod, r.pod);
        const patched = jsonpatch.applyPatch(structuredClone(pod), ops as jsonpatch.Operation[], true, false).newDocument;
        expect(patched).to.deep.equal(r.pod);
      }),
      RUNS,
    );
  });

  it('every injected pod passes the Kubernetes schema and pod validation', () => {
    fc.assert(
      fc.property(podArb, fc.constantFrom(0, 1), (pod, ci) => {
        const r = mutatePod(pod, configs[ci]);
        if (r.action !== 'inject') return;
        expect(podProblems(r.pod)).to.deep.equal([]);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses exactly the Job pods that could only get a classic sidecar', () => {
    fc.assert(
      fc.property(podArb, fc.constantFrom(0, 1), (pod, ci) => {
        const r = mutatePod(pod, configs[ci]);
        const job = pod.metadata!.ownerReferences !== undefined;
        const classic = ci === 1 || pod.metadata!.annotations?.['agentgate.dev/native-sidecar'] === 'false';
        expect(r.action).to.equal(job && classic ? 'refuse' : 'inject');
      }),
      RUNS,
    );
  });
});
