// The ValidatingAdmissionPolicy backstop (injector/validatingadmissionpolicy.yaml)
// evaluated with a CEL interpreter (@marcbachmann/cel-js) over the same pods as the
// webhook: what the webhook refuses, the policy refuses too when it turns up in the
// final pod (added after the webhook, or with no webhook at all), and every pod the
// webhook produces passes it. Kubernetes 1.20 has no ValidatingAdmissionPolicy, so
// this is as close to the API server as the test control plane allows; the
// expressions use only CEL's standard macros and functions (no Kubernetes library),
// which both interpreters implement alike.

import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parse as celParse } from '@marcbachmann/cel-js';
import { mutatePod } from '../../injector/mutate.js';
import { mutateEphemeralContainers, reviewPodUpdate } from '../../injector/ephemeral.js';
import { policyParams } from '../../injector/policy-params.js';
import type { Container, Pod } from '../../injector/pod-types.js';
import { GOLDEN_DIR, goldenConfig } from './support.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../injector');
const docs = parseAllDocuments(readFileSync(path.join(SRC, 'validatingadmissionpolicy.yaml'), 'utf8')).map((d) => d.toJS());
const cfg = goldenConfig(false);
const params = policyParams(cfg);

interface Policy { spec: { variables?: { name: string; expression: string }[]; validations: { expression: string; message?: string; messageExpression?: string }[] } }
type Compiled = { variables: [string, (ctx: object) => unknown][]; validations: [(ctx: object) => unknown, string | ((ctx: object) => unknown)][] };

function compile(p: Policy): Compiled {
  return {
    variables: (p.spec.variables ?? []).map((v) => [v.name, celParse(v.expression)]),
    validations: p.spec.validations.map((v) => [celParse(v.expression), v.messageExpression ? celParse(v.messageExpression) : v.message!]),
  };
}

const pods = compile(docs[0] as Policy);
const namespaces = compile(docs[2] as Policy);

interface Request { namespace?: string; nsLabels?: Record<string, string>; operation?: 'CREATE' | 'UPDATE'; subResource?: string; oldObject?: unknown }

/** The messages of the validations that fail, as the API server would deny with them (empty: admitted). */
function denials(policy: Compiled, object: unknown, r: Request = {}): string[] {
  const namespace = r.namespace ?? 'agents';
  const ctx: Record<string, unknown> = {
    object,
    oldObject: r.oldObject ?? null,
    request: { namespace, operation: r.operation ?? 'CREATE', subResource: r.subResource ?? '' },
    namespaceObject: { metadata: { name: namespace, labels: r.nsLabels ?? {} } },
    params,
    variables: {},
  };
  const vars = ctx.variables as Record<string, unknown>;
  for (const [name, expr] of policy.variables) vars[name] = expr(ctx);
  const out: string[] = [];
  for (const [expr, msg] of policy.validations) {
    const ok = expr(ctx);
    if (typeof ok !== 'boolean') throw new Error(`a validation gave ${String(ok)}, not a boolean`);
    if (!ok) out.push(typeof msg === 'string' ? msg : String(msg(ctx)));
  }
  return out;
}

const golden = (f: string) => parse(readFileSync(path.join(GOLDEN_DIR, f), 'utf8')) as Pod & { refused?: string; skipped?: boolean };
const plainIn = () => golden('plain.in.yaml');
const plainOut = () => golden('plain.out.yaml');
const TOKEN = 'kube-api-access-x7k2p';
const agent = (p: Pod) => p.spec!.containers.find((c) => c.name === 'agent')!;

const M = {
  label: 'agentgate: label agentgate.dev/inject: expected "enabled" or "disabled" (values are case-sensitive)',
  optOut: "agentgate: pod labeled agentgate.dev/inject=disabled in an opted-in namespace, but neither its namespace nor its service account is in the injector config's optOut",
  sidecar: "agentgate: pod opted in (agentgate.dev/inject) has no agentgate-proxy sidecar; is the agentgate injector running and its MutatingWebhookConfiguration installed?",
  host: "agentgate: an agent pod may not use hostNetwork, hostPID, hostIPC or shareProcessNamespace (each lets its containers reach the proxy's real token)",
  privileged: 'agentgate: a container other than agentgate-proxy is privileged or a Windows host process, so it can read every volume of the pod through the node',
  hostPath: "agentgate: a hostPath volume reaches the kubelet's directory /var/lib/kubelet (or is not an absolute path without '.'/'..' segments)",
  credential: 'agentgate: a container other than agentgate-proxy mounts a credential volume (service-account token or database credentials)',
  saPath: 'agentgate: only the agentgate-identity volume may be mounted at the service-account path of an agent container',
  secret: "agentgate: a container other than agentgate-proxy reads a Secret that is not in the injector config's allowedSecrets",
};

/**
 * Each way around the proxy, applied to a pod. The webhook refuses it in the pod it is
 * asked to inject, or rewrites it away; the policy denies it in a pod that was injected
 * first and changed afterwards.
 */
const tampers: { name: string; tamper: (p: Pod) => void; denied: string[] }[] = [
  { name: 'hostPID', tamper: (p) => { p.spec!.hostPID = true; }, denied: [M.host] },
  { name: 'hostIPC', tamper: (p) => { p.spec!.hostIPC = true; }, denied: [M.host] },
  { name: 'hostNetwork', tamper: (p) => { p.spec!.hostNetwork = true; }, denied: [M.host] },
  { name: 'shareProcessNamespace', tamper: (p) => { p.spec!.shareProcessNamespace = true; }, denied: [M.host] },
  { name: 'a privileged agent container', tamper: (p) => { agent(p).securityContext = { privileged: true }; }, denied: [M.privileged] },
  { name: 'a Windows host-process agent container', tamper: (p) => { agent(p).securityContext = { windowsOptions: { hostProcess: true } }; }, denied: [M.privileged] },
  ...['/var/lib/kubelet/pods', '/var//lib/', '/', 'var/lib', '/var/log/../lib'].map((hp) => ({
    name: `a hostPath of '${hp}'`,
    tamper: (p: Pod) => { p.spec!.volumes!.push({ name: 'host', hostPath: { path: hp } }); },
    denied: [M.hostPath],
  })),
  {
    name: "an env reference to a connection's Secret",
    tamper: (p) => { agent(p).env = [...(agent(p).env ?? []), { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'payments-db-credentials', key: 'password' } } }]; },
    denied: [M.secret],
  },
  { name: 'envFrom of an unlisted Secret', tamper: (p) => { agent(p).envFrom = [{ secretRef: { name: 'agent-robot' } }]; }, denied: [M.secret] },
  {
    name: 'a mounted secret volume of an unlisted Secret (a token Secret under any name)',
    tamper: (p) => {
      p.spec!.volumes!.push({ name: 'robot', secret: { secretName: 'agent-robot' } });
      agent(p).volumeMounts!.push({ name: 'robot', mountPath: '/robot' });
    },
    denied: [M.secret],
  },
  {
    name: "a mounted projected volume with a connection's Secret",
    tamper: (p) => {
      p.spec!.volumes!.push({ name: 'bundle', projected: { sources: [{ configMap: { name: 'c' } }, { secret: { name: 'ledger-db-credentials' } }] } });
      agent(p).volumeMounts!.push({ name: 'bundle', mountPath: '/bundle' });
    },
    denied: [M.secret],
  },
  { name: 'a mount of the real token volume', tamper: (p) => { agent(p).volumeMounts!.push({ name: TOKEN, mountPath: '/stolen' }); }, denied: [M.credential] },
  {
    name: 'an init container with the real token at the service-account path',
    tamper: (p) => { p.spec!.initContainers = [...(p.spec!.initContainers ?? []), { name: 'late', image: 'busybox', volumeMounts: [{ name: TOKEN, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }] }]; },
    denied: [M.credential, M.saPath],
  },
];

describe('ValidatingAdmissionPolicy backstop (CEL, evaluated offline)', () => {
  it('admits every pod the webhook injects in the golden cases, in opted-in namespaces and others', () => {
    const outs = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.out.yaml'));
    let checked = 0;
    for (const f of outs) {
      const out = golden(f);
      if (out.refused !== undefined || out.skipped) continue;
      expect(denials(pods, out), f).to.deep.equal([]);
      expect(denials(pods, out, { nsLabels: { 'agentgate.dev/inject': 'enabled' } }), f).to.deep.equal([]);
      checked++;
    }
    expect(checked).to.be.greaterThan(15);
  });

  it('admits the opt-outs the injector config allows, and denies the others and malformed labels, as the webhook does', () => {
    const enabled = { 'agentgate.dev/inject': 'enabled' };
    expect(denials(pods, golden('opted-out-namespace.in.yaml'), { namespace: 'platform', nsLabels: enabled })).to.deep.equal([]);
    expect(denials(pods, golden('opted-out-service-account.in.yaml'), { nsLabels: enabled })).to.deep.equal([]);
    expect(mutatePod(golden('opted-out.in.yaml'), cfg, { namespaceOptedIn: true }).action).to.equal('refuse');
    expect(denials(pods, golden('opted-out.in.yaml'), { nsLabels: enabled })).to.deep.equal([M.optOut]);
    // Outside opted-in namespaces `disabled` is no opt-out of anything.
    expect(denials(pods, golden('opted-out.in.yaml'))).to.deep.equal([]);
    const malformed = golden('label-malformed.in.yaml');
    expect(denials(pods, malformed)).to.deep.equal([M.label]);
    expect(denials(pods, malformed, { nsLabels: enabled })).to.deep.equal([M.label, M.sidecar, M.credential, M.saPath]);
  });

  it('denies an opted-in pod without the proxy (the webhook was not called)', () => {
    expect(denials(pods, plainIn())).to.deep.equal([M.sidecar, M.credential, M.saPath]);
  });

  for (const t of tampers) {
    it(`two locks on ${t.name}: the webhook refuses or rewrites it, the policy denies it after injection`, () => {
      const input = plainIn();
      t.tamper(input);
      const r = mutatePod(input, cfg);
      if (r.action === 'inject') expect(denials(pods, r.pod), 'what the webhook rewrote it into').to.deep.equal([]);
      else expect(r.action).to.equal('refuse');
      const injected = plainOut();
      t.tamper(injected);
      expect(denials(pods, injected)).to.deep.equal(t.denied);
    });
  }

  it('two locks on kubectl debug: the policy denies an ephemeral container with the real token, and admits what the webhook rewrites it into', () => {
    const old = plainOut();
    const object = structuredClone(old);
    const debug = { name: 'debugger', image: 'busybox', volumeMounts: [{ name: TOKEN, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }] };
    object.spec!.ephemeralContainers = [debug as never];
    const req = { operation: 'UPDATE' as const, subResource: 'ephemeralcontainers', oldObject: old };
    expect(denials(pods, object, req)).to.deep.equal([M.credential, M.saPath]);
    const r = mutateEphemeralContainers(object, old, cfg);
    expect(r.action).to.equal('inject');
    expect(denials(pods, (r as { pod: Pod }).pod, req)).to.deep.equal([]);
    const privileged = structuredClone(old);
    privileged.spec!.ephemeralContainers = [{ name: 'debugger', image: 'busybox', securityContext: { privileged: true } } as Container as never];
    expect(denials(pods, privileged, req)).to.deep.equal([M.privileged]);
    const secret = structuredClone(old);
    secret.spec!.ephemeralContainers = [{ name: 'debugger', image: 'busybox', envFrom: [{ secretRef: { name: 'payments-db-credentials' } }] } as never];
    expect(denials(pods, secret, req)).to.deep.equal([M.secret]);
  });

  it('two locks on swapping the proxy\'s image in a pod UPDATE, even one that also opts the pod out', () => {
    const old = plainOut();
    const swapped = plainOut();
    swapped.metadata!.labels!['agentgate.dev/inject'] = 'disabled';
    swapped.spec!.initContainers![0].image = 'registry.example/token-dumper:1';
    expect(reviewPodUpdate(swapped, old).action).to.equal('refuse');
    expect(denials(pods, swapped, { operation: 'UPDATE', oldObject: old })).to.deep.equal(["agentgate: the image of the agentgate-proxy container, which holds the pod's real credentials, cannot change; recreate the pod"]);
    const bumped = plainOut();
    agent(bumped).image = 'registry.example/agent:1.5';
    expect(denials(pods, bumped, { operation: 'UPDATE', oldObject: old })).to.deep.equal([]);
  });

  it('reads the allow-list and the opt-outs from the parameters agentgate inject --policy-params writes', () => {
    expect(params.data).to.deep.equal({ 'allowed-secret.openai-api-key': '', 'opt-out-namespace.platform': '', 'opt-out-service-account.agents.batch-exporter': '' });
    const pod = plainOut();
    agent(pod).env = [{ name: 'OPENAI_API_KEY', valueFrom: { secretKeyRef: { name: 'openai-api-key', key: 'key' } } }];
    expect(denials(pods, pod)).to.deep.equal([]);
  });

  it('refuses a namespace label other than enabled or disabled', () => {
    const ns = (labels?: Record<string, string>) => ({ metadata: { name: 'agents', ...(labels ? { labels } : {}) } });
    expect(denials(namespaces, ns({ 'agentgate.dev/inject': 'Enabled' }))).to.deep.equal([M.label]);
    for (const l of [undefined, {}, { 'agentgate.dev/inject': 'enabled' }, { 'agentgate.dev/inject': 'disabled' }] as (Record<string, string> | undefined)[]) expect(denials(namespaces, ns(l))).to.deep.equal([]);
  });
});
