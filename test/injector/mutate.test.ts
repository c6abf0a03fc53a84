// The mutation's decisions that the golden files do not pin one by one: when it
// skips, when it refuses, how annotations steer it. Plus the injector config
// loader and the reference admission configuration files.

import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { ValidatingAdmissionPolicy } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy';
import { ValidatingAdmissionPolicyBinding } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding';
import { mutatePod } from '../../injector/mutate.js';
import type { MutationResult } from '../../injector/mutate.js';
import { parseInjectorConfig, ConfigError, DEFAULT_CONFIG } from '../../injector/config.js';
import { createPatch } from '../../injector/json-patch.js';
import { parseQuantity } from '../../injector/quantity.js';
import { KUBELET_HOST_PATH, UNCLEAR_HOST_PATH } from '../../injector/names.js';
import type { Pod } from '../../injector/pod-types.js';
import { GOLDEN_DIR, goldenConfig } from './support.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../injector');
const plain = () => parse(readFileSync(path.join(GOLDEN_DIR, 'plain.in.yaml'), 'utf8')) as Pod;
const cfg = goldenConfig(false);

function injected(r: MutationResult): { pod: Pod; warnings: string[] } {
  if (r.action !== 'inject') throw new Error(`expected inject, got ${JSON.stringify(r)}`);
  return r;
}

function annotate(pod: Pod, ann: Record<string, string>): Pod {
  pod.metadata!.annotations = { ...(pod.metadata!.annotations ?? {}), ...ann };
  return pod;
}

describe('injector mutation', () => {
  it('skips a pod without the label when its namespace is not opted in', () => {
    const pod = plain();
    delete pod.metadata!.labels!['agentgate.dev/inject'];
    expect(mutatePod(pod, cfg)).to.deep.equal({ action: 'skip', reason: 'the pod is not labeled agentgate.dev/inject=enabled' });
  });

  it('skips a pod labeled disabled in a namespace that is not opted in', () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    expect(mutatePod(pod, cfg, { namespaceOptedIn: false })).to.deep.equal({ action: 'skip', reason: 'the pod is labeled agentgate.dev/inject=disabled' });
  });

  it('refuses an opt-out in an opted-in namespace by a service account the config does not list', () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    expect(mutatePod(pod, cfg, { namespaceOptedIn: true })).to.deep.equal({
      action: 'refuse',
      message: "agentgate refuses pod agents/agent-7d9f8b6c5-*: it is labeled agentgate.dev/inject=disabled in a namespace that is opted in, but only the namespaces and service accounts in the injector config's optOut may opt out, and neither namespace 'agents' nor service account 'agents/agent' is listed",
    });
  });

  it('honours an opt-out by a listed service account, named as the API server defaults it', () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    delete pod.spec!.serviceAccountName;
    delete pod.spec!.serviceAccount;
    const c = { ...cfg, optOut: { namespaces: [], serviceAccounts: ['agents/default'] } };
    expect(mutatePod(pod, c, { namespaceOptedIn: true })).to.deep.equal({
      action: 'skip',
      reason: 'the pod is labeled agentgate.dev/inject=disabled and the injector config lets agents/default opt out',
    });
  });

  it('refuses an opt-out whose namespace is unknown, saying how to give it', () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    delete pod.metadata!.namespace;
    const r = mutatePod(pod, cfg, { namespaceOptedIn: true });
    expect(r.action).to.equal('refuse');
    expect((r as { message: string }).message).to.match(/the namespace is not known \(service account 'agent'; give the manifest a namespace or use --namespace\)$/);
  });

  for (const value of ['Enabled', 'ENABLED', 'true', 'Disabled', 'enabled ', '']) {
    it(`refuses the label value '${value}' whether or not the namespace is opted in`, () => {
      const pod = plain();
      pod.metadata!.labels!['agentgate.dev/inject'] = value;
      const message = `agentgate refuses pod agents/agent-7d9f8b6c5-*: label agentgate.dev/inject: expected "enabled" or "disabled", got '${value}' (values are case-sensitive, as the webhook's selectors match them)`;
      expect(mutatePod(pod, cfg, { namespaceOptedIn: true })).to.deep.equal({ action: 'refuse', message });
      expect(mutatePod(pod, cfg, { namespaceOptedIn: false })).to.deep.equal({ action: 'refuse', message });
    });
  }

  it('uses a classic sidecar when the pod asks for it with native-sidecar "false"', () => {
    const { pod } = injected(mutatePod(annotate(plain(), { 'agentgate.dev/native-sidecar': 'false' }), cfg));
    expect(pod.spec!.containers[0].name).to.equal('agentgate-proxy');
    expect(pod.spec!.containers[0].lifecycle!.postStart!.exec!.command![0]).to.equal('node');
    expect(pod.spec!.initContainers).to.equal(undefined);
  });

  it('falls back to classic with a warning when the pod asks for native sidecars the cluster lacks', () => {
    const r = injected(mutatePod(annotate(plain(), { 'agentgate.dev/native-sidecar': 'true' }), goldenConfig(true)));
    expect(r.pod.spec!.containers[0].name).to.equal('agentgate-proxy');
    expect(r.warnings).to.deep.equal([
      'agentgate: agentgate.dev/native-sidecar=true ignored: the injector is configured for a cluster without native sidecars; the proxy runs as a classic sidecar',
    ]);
  });

  it('runs the configured postStart command in classic mode', () => {
    const c = { ...goldenConfig(true), classicReadyCommand: ['/ready', '--wait'] };
    const { pod } = injected(mutatePod(plain(), c));
    expect(pod.spec!.containers[0].lifecycle).to.deep.equal({ postStart: { exec: { command: ['/ready', '--wait'] } } });
  });

  it('refuses a user container named agentgate-proxy', () => {
    const pod = plain();
    pod.spec!.containers[0].name = 'agentgate-proxy';
    const r = mutatePod(pod, cfg);
    expect(r).to.deep.equal({ action: 'refuse', message: "agentgate refuses pod agents/agent-7d9f8b6c5-*: the container name 'agentgate-proxy' is reserved for the agentgate proxy" });
  });

  it('refuses invalid annotation values instead of guessing', () => {
    expect(mutatePod(annotate(plain(), { 'agentgate.dev/native-sidecar': 'yes' }), cfg)).to.deep.equal({
      action: 'refuse',
      message: `agentgate refuses pod agents/agent-7d9f8b6c5-*: annotation agentgate.dev/native-sidecar: expected "true" or "false", got 'yes'`,
    });
    expect(mutatePod(annotate(plain(), { 'agentgate.dev/proxy-cpu-request': 'lots' }), cfg)).to.deep.equal({
      action: 'refuse',
      message: "agentgate refuses pod agents/agent-7d9f8b6c5-*: annotation agentgate.dev/proxy-cpu-request: 'lots' is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi)",
    });
    expect(mutatePod(annotate(plain(), { 'agentgate.dev/proxy-cpu-request': '1500m' }), cfg)).to.deep.equal({
      action: 'refuse',
      message: "agentgate refuses pod agents/agent-7d9f8b6c5-*: the proxy's cpu request 1500m is above its limit 1 (check the agentgate.dev/proxy-cpu-* annotations)",
    });
  });

  it('gives the proxy no Kubernetes token when the pod says kubernetes-access "false"', () => {
    const { pod } = injected(mutatePod(annotate(plain(), { 'agentgate.dev/kubernetes-access': 'false' }), cfg));
    const proxy = pod.spec!.initContainers![0];
    expect(proxy.volumeMounts!.map((m) => m.name)).to.not.include('kube-api-access-x7k2p');
    expect(proxy.env!.find((e) => e.name === 'AGENTGATE_KUBERNETES_TOKEN_FILE')!.value).to.equal('');
    expect(pod.spec!.containers[0].volumeMounts).to.deep.equal([{ name: 'agentgate-identity', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }]);
  });

  it("keeps the pod's own Prometheus annotations and says so", () => {
    const r = injected(mutatePod(annotate(plain(), { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8000' }), cfg));
    expect(r.pod.metadata!.annotations!['prometheus.io/port']).to.equal('8000');
    expect(r.warnings).to.include('agentgate: the pod\'s own prometheus.io annotations are kept; scrape the proxy on port 15090 (name ag-metrics) with a PodMonitor');
  });

  it('removes agent mounts of the sidecar\'s own volumes from a forged injected pod', () => {
    const { pod } = injected(mutatePod(annotate(plain(), { 'agentgate.dev/connections': 'payments' }), cfg));
    pod.spec!.containers[0].volumeMounts!.push({ name: 'agentgate-conn-payments', mountPath: '/stolen' }, { name: 'agentgate-approval-token', mountPath: '/stolen2' });
    const again = injected(mutatePod(pod, cfg));
    expect(again.pod.spec!.containers[0].volumeMounts!.map((m) => m.name)).to.deep.equal(['agentgate-identity']);
  });

  it('refuses shareProcessNamespace: agents could read the proxy\'s credentials through /proc', () => {
    const pod = plain();
    pod.spec!.shareProcessNamespace = true;
    const r = mutatePod(pod, cfg);
    expect(r.action).to.equal('refuse');
    expect((r as { message: string }).message).to.equal(
      "agentgate refuses pod agents/agent-7d9f8b6c5-*: it sets shareProcessNamespace, which lets agent containers read the proxy's files (its real credentials) through /proc; remove it, or, if it is not an agent, run it in a namespace that is not opted in (or one the injector config's optOut lists, labeled agentgate.dev/inject=disabled)",
    );
  });

  it('warns about agent containers that add SYS_PTRACE or SYS_ADMIN', () => {
    const pod = plain();
    pod.spec!.containers[0].securityContext = { capabilities: { add: ['SYS_PTRACE'] } };
    expect(injected(mutatePod(pod, cfg)).warnings).to.deep.equal([
      "agentgate: containers agent add SYS_ADMIN, SYS_PTRACE or ALL capabilities: a container break-out from them would reach the proxy's credentials",
    ]);
  });

  it('refuses a Windows host-process container', () => {
    const pod = plain();
    pod.spec!.containers[0].securityContext = { windowsOptions: { hostProcess: true } };
    const r = mutatePod(pod, cfg);
    expect((r as { message: string }).message).to.match(/^agentgate refuses pod agents\/agent-7d9f8b6c5-\*: container 'agent' is a Windows host process, which runs on the node outside the pod's isolation; remove it/);
  });

  const kubeletPaths = ['/', '//', '/var', '/var/', '/var/lib', '/var/lib/kubelet', '/var/lib/kubelet/', '/var/lib/kubelet/pods', '/var/lib/kubelet/pods/0b3c/volumes', '//var///lib//kubelet'];
  for (const p of kubeletPaths) {
    it(`refuses a hostPath volume of '${p}', which reaches the kubelet's pod directories`, () => {
      const pod = plain();
      pod.spec!.volumes!.push({ name: 'host', hostPath: { path: p } });
      const r = mutatePod(pod, cfg);
      expect((r as { message: string }).message).to.include(`volume 'host': hostPath '${p}' reaches the kubelet's directory /var/lib/kubelet`);
    });
  }

  for (const p of ['var/lib', 'relative', '/var/lib/./kubelet', '/var/log/../lib/kubelet', '/data/..', '']) {
    it(`refuses a hostPath volume of '${p}', which a prefix check cannot follow`, () => {
      const pod = plain();
      pod.spec!.volumes!.push({ name: 'host', hostPath: { path: p } });
      const r = mutatePod(pod, cfg);
      expect((r as { message: string }).message).to.include(`volume 'host': hostPath '${p}' is not an absolute path without '.' or '..' segments`);
    });
  }

  for (const p of ['/var/log', '/var/lib/kubeletx', '/var/lib/docker', '/etc/ssl/certs', '/var/libs', '/data/.cache']) {
    it(`injects a pod with a hostPath volume of '${p}'`, () => {
      const pod = plain();
      pod.spec!.volumes!.push({ name: 'host', hostPath: { path: p } });
      expect(mutatePod(pod, cfg).action).to.equal('inject');
    });
  }

  it('lets an env variable the injector replaces read a Secret: the reference is gone from the pod', () => {
    const pod = plain();
    pod.spec!.containers[0].env = [{ name: 'PGHOST', valueFrom: { secretKeyRef: { name: 'payments-db-credentials', key: 'host' } } }];
    const { pod: out } = injected(mutatePod(annotate(pod, { 'agentgate.dev/connections': 'payments' }), cfg));
    expect(out.spec!.containers[0].env!.find((e) => e.name === 'PGHOST')).to.deep.equal({ name: 'PGHOST', value: '127.0.0.1' });
  });

  it('refuses a secretKeyRef without a name (it is not on the allow-list)', () => {
    const pod = plain();
    pod.spec!.containers[0].env = [{ name: 'X', valueFrom: { secretKeyRef: { key: 'token' } as never } }];
    expect((mutatePod(pod, cfg) as { message: string }).message).to.include("container 'agent' (env X) references Secret '', which is not in the injector config's allowedSecrets");
  });

  it('refuses an init container that reads an allowed Secret\'s neighbour: the allow-list is by exact name', () => {
    const pod = plain();
    pod.spec!.initContainers = [{ name: 'fetch', image: 'busybox', envFrom: [{ secretRef: { name: 'openai-api-key-admin' } }] }];
    expect((mutatePod(pod, cfg) as { message: string }).message).to.include("init container 'fetch' (envFrom) references Secret 'openai-api-key-admin', which is not in the injector config's allowedSecrets");
  });

  it('does not touch the input object', () => {
    const pod = plain();
    const copy = structuredClone(pod);
    mutatePod(pod, cfg);
    expect(pod).to.deep.equal(copy);
  });
});

describe('injector JSON patch', () => {
  it('escapes / and ~ in member names (RFC 6901)', () => {
    expect(createPatch({ a: {} }, { a: { 'agentgate.dev/status': 'x', 'a~b': 'y' } })).to.deep.equal([
      { op: 'add', path: '/a/agentgate.dev~1status', value: 'x' },
      { op: 'add', path: '/a/a~0b', value: 'y' },
    ]);
  });

  it('is empty for equal documents', () => {
    expect(createPatch(plain(), plain())).to.deep.equal([]);
  });
});

describe('injector config', () => {
  it('fills defaults and numbers connection ports in config order, skipping taken ones', () => {
    const c = parseInjectorConfig('connections:\n  a: {}\n  b: {port: 15433}\n  c: {}\n', 'c.yaml');
    expect(Object.fromEntries(Object.entries(c.connections).map(([n, v]) => [n, v.port]))).to.deep.equal({ a: 15432, b: 15433, c: 15434 });
    expect(c.image).to.equal(DEFAULT_CONFIG.image);
  });

  it('reports every mistake with file:line:col', () => {
    try {
      parseInjectorConfig('image: x\nnativeSidecar: true\nresources:\n  limits: {memory: lots}\nconnections:\n  a: {port: 15021}\n', 'injector.yaml');
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as Error).message.split('\n')).to.deep.equal([
        "injector.yaml:2:1: nativeSidecar: unknown key (did you mean 'nativeSidecars'?)",
      ]);
    }
    try {
      parseInjectorConfig('resources:\n  limits: {memory: lots}\nconnections:\n  a: {port: 15021}\n', 'injector.yaml');
      expect.fail('should throw');
    } catch (err) {
      expect((err as Error).message.split('\n')).to.deep.equal([
        "injector.yaml:2:20: resources.limits.memory: invalid quantity 'lots' (expected e.g. 100m, 0.5, 64Mi)",
        'injector.yaml:4:13: connections.a.port: port 15021 is already used by the health endpoint',
      ]);
    }
  });

  it('reads allowedSecrets and optOut, and refuses a connection Secret on the allow-list or a service account without its namespace', () => {
    const c = parseInjectorConfig('allowedSecrets: [b, a, a]\noptOut: {namespaces: [platform], serviceAccounts: [agents/exporter]}\n', 'c.yaml');
    expect([c.allowedSecrets, c.optOut]).to.deep.equal([['a', 'b'], { namespaces: ['platform'], serviceAccounts: ['agents/exporter'] }]);
    expect([DEFAULT_CONFIG.allowedSecrets, DEFAULT_CONFIG.optOut]).to.deep.equal([[], { namespaces: [], serviceAccounts: [] }]);
    try {
      parseInjectorConfig('connections:\n  payments: {secret: db}\nallowedSecrets: [ok, db]\n', 'injector.yaml');
      expect.fail('should throw');
    } catch (err) {
      expect((err as Error).message).to.equal("injector.yaml:3:22: allowedSecrets[1]: 'db' is the Secret of connection 'payments': only the proxy may read database credentials");
    }
    expect(() => parseInjectorConfig('optOut:\n  serviceAccounts: [exporter]\n', 'injector.yaml')).to.throw("injector.yaml:2:21: optOut.serviceAccounts[0]: invalid value 'exporter' (namespace/service-account)");
  });

  it('accepts the commented example config shipped in injector/', () => {
    const file = path.join(SRC, 'config.example.yaml');
    const c = parseInjectorConfig(readFileSync(file, 'utf8'), file);
    expect(c.connections).to.deep.equal({ payments: { port: 15432, secret: 'payments-db-credentials', database: 'payments' } });
  });

  it('parses Kubernetes quantities', () => {
    expect([parseQuantity('250m'), parseQuantity('1.5'), parseQuantity('64Mi'), parseQuantity('1e3'), parseQuantity('1Gb')]).to.deep.equal([0.25, 1.5, 64 * 2 ** 20, 1000, undefined]);
  });
});

describe('reference admission configuration', () => {
  it('the MutatingWebhookConfiguration is valid and has the three entries with the required settings', () => {
    const mwc = parse(readFileSync(path.join(SRC, 'mutatingwebhookconfiguration.yaml'), 'utf8'));
    new MutatingWebhookConfiguration(mwc).validate();
    expect(mwc.webhooks.map((w: { name: string }) => w.name)).to.deep.equal(['pods.inject.agentgate.dev', 'namespaces.inject.agentgate.dev', 'ephemeralcontainers.inject.agentgate.dev']);
    for (const w of mwc.webhooks) {
      expect([w.failurePolicy, w.timeoutSeconds, w.reinvocationPolicy, w.sideEffects, w.admissionReviewVersions, w.clientConfig.service.path]).to.deep.equal(['Fail', 5, 'IfNeeded', 'None', ['v1'], '/mutate']);
      expect(w.namespaceSelector.matchExpressions).to.deep.include({ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'agentgate-system'] });
    }
    const [pods, namespaces, ephemeral] = mwc.webhooks;
    // Every labeled pod but an opted-out one reaches the webhook, so a malformed value is refused, not ignored.
    expect(pods.objectSelector.matchExpressions).to.deep.equal([{ key: 'agentgate.dev/inject', operator: 'Exists' }, { key: 'agentgate.dev/inject', operator: 'NotIn', values: ['disabled'] }]);
    expect(pods.namespaceSelector.matchExpressions).to.deep.include({ key: 'agentgate.dev/inject', operator: 'NotIn', values: ['enabled', 'disabled'] });
    // Every pod of an opted-in namespace, the opted-out ones included: the webhook decides who may opt out.
    expect(namespaces.objectSelector).to.equal(undefined);
    expect(namespaces.namespaceSelector.matchExpressions).to.deep.include({ key: 'agentgate.dev/inject', operator: 'In', values: ['enabled'] });
    expect([pods.rules, namespaces.rules].map((r) => r.map((x: { operations: string[]; resources: string[] }) => [x.operations, x.resources]))).to.deep.equal([[[['CREATE', 'UPDATE'], ['pods']]], [[['CREATE', 'UPDATE'], ['pods']]]]);
    expect(ephemeral.rules.map((x: { operations: string[]; resources: string[] }) => [x.operations, x.resources])).to.deep.equal([[['UPDATE'], ['pods/ephemeralcontainers']]]);
    expect(ephemeral.objectSelector).to.equal(undefined);
  });

  it('the ValidatingAdmissionPolicies, their bindings and the parameter ConfigMap are valid objects', () => {
    const [vap, binding, nsVap, nsBinding, params] = parseAllDocuments(readFileSync(path.join(SRC, 'validatingadmissionpolicy.yaml'), 'utf8')).map((d) => d.toJS());
    for (const p of [vap, nsVap]) new ValidatingAdmissionPolicy(p).validate();
    for (const b of [binding, nsBinding]) new ValidatingAdmissionPolicyBinding(b).validate();
    expect(vap.spec.validations).to.have.length(10);
    expect([binding.spec.validationActions, nsBinding.spec.validationActions]).to.deep.equal([['Deny'], ['Deny']]);
    expect(vap.spec.paramKind).to.deep.equal({ apiVersion: 'v1', kind: 'ConfigMap' });
    expect(binding.spec.paramRef).to.deep.equal({ name: 'agentgate-injector-policy', namespace: 'agentgate-system', parameterNotFoundAction: 'Deny' });
    expect([params.kind, params.metadata.name, params.metadata.namespace]).to.deep.equal(['ConfigMap', 'agentgate-injector-policy', 'agentgate-system']);
  });

  it('the policy checks hostPaths with the same expressions as the webhook', () => {
    const text = readFileSync(path.join(SRC, 'validatingadmissionpolicy.yaml'), 'utf8');
    for (const re of [KUBELET_HOST_PATH, UNCLEAR_HOST_PATH]) expect(text).to.include(`matches('${re}')`);
  });
});
