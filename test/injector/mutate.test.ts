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

  it('skips a pod labeled disabled even in an opted-in namespace', () => {
    const pod = plain();
    pod.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    expect(mutatePod(pod, cfg, { namespaceOptedIn: true }).action).to.equal('skip');
  });

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
      "agentgate refuses pod agents/agent-7d9f8b6c5-*: it sets shareProcessNamespace, which lets agent containers read the proxy's files (its real credentials) through /proc; remove it, or label the pod agentgate.dev/inject=disabled if it is not an agent",
    );
  });

  it('warns about privileged agent containers', () => {
    const pod = plain();
    pod.spec!.containers[0].securityContext = { privileged: true };
    expect(injected(mutatePod(pod, cfg)).warnings).to.deep.equal([
      "agentgate: containers agent are privileged or add SYS_ADMIN/SYS_PTRACE: they can reach the proxy's credentials through the node",
    ]);
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
  it('the MutatingWebhookConfiguration is valid and has the two entries with the required settings', () => {
    const mwc = parse(readFileSync(path.join(SRC, 'mutatingwebhookconfiguration.yaml'), 'utf8'));
    new MutatingWebhookConfiguration(mwc).validate();
    expect(mwc.webhooks).to.have.length(2);
    for (const w of mwc.webhooks) {
      expect([w.failurePolicy, w.timeoutSeconds, w.reinvocationPolicy, w.sideEffects, w.admissionReviewVersions, w.clientConfig.service.path]).to.deep.equal(['Fail', 5, 'IfNeeded', 'None', ['v1'], '/mutate']);
      expect(w.namespaceSelector.matchExpressions).to.deep.include({ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'agentgate-system'] });
    }
    expect(mwc.webhooks[0].objectSelector).to.deep.equal({ matchLabels: { 'agentgate.dev/inject': 'enabled' } });
    expect(mwc.webhooks[1].objectSelector.matchExpressions).to.deep.equal([{ key: 'agentgate.dev/inject', operator: 'NotIn', values: ['enabled', 'disabled'] }]);
  });

  it('the ValidatingAdmissionPolicy and its binding are valid objects', () => {
    const [vap, binding] = parseAllDocuments(readFileSync(path.join(SRC, 'validatingadmissionpolicy.yaml'), 'utf8')).map((d) => d.toJS());
    new ValidatingAdmissionPolicy(vap).validate();
    new ValidatingAdmissionPolicyBinding(binding).validate();
    expect(vap.spec.validations).to.have.length(3);
    expect(binding.spec.validationActions).to.deep.equal(['Deny']);
  });
});
