// Test wiring for the Kubernetes proxy: the API server DOUBLE (test/support/kube-api-double.ts),
// the real proxy in front of it with a real policy (core/policy) and the real chained audit
// writer (core/audit), identity files in a temp dir, and a kubeconfig for kubectl that uses
// them exactly as an in-cluster client would (server, ca.crt, token file).

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parsePolicy } from '../../../core/policy/load.js';
import type { Policy, PolicySource } from '../../../core/policy/types.js';
import { openAuditWriter } from '../../../core/audit/open.js';
import type { AuditWriter } from '../../../core/audit/open.js';
import type { AuditRecord, AuditSink } from '../../../core/audit/types.js';
import { createLogger } from '../../../core/log.js';
import type { PodIdentity } from '../../../core/identity.js';
import { startKubernetesProxy } from '../../../sidecar/kubernetes/proxy.js';
import type { KubernetesProxy } from '../../../sidecar/kubernetes/proxy.js';
import type { KubernetesConfig } from '../../../sidecar/kubernetes/config.js';
import { KubeApiDouble } from '../../support/kube-api-double.js';
import type { ApprovalClient } from '../../../approval/client.js';

export const KUBECTL_NEW = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';
export const KUBECTL_OLD = '/usr/lib/google-cloud-sdk/bin/kubectl.1.27';

export const POD: PodIdentity = { namespace: 'payments', name: 'agent-7d9f', uid: '0b7e1c2a-1111-4a2b-9c3d-2e4f5a6b7c8d', serviceAccount: 'agent' };

export const TEST_POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: kube-test }
spec:
  default: deny
  rules:
    - name: read-everything
      kubernetes: { verbs: [get, list, watch], resources: ["*", "pods/log"] }
      action: allow
    - name: edit-configmaps
      kubernetes: { verbs: [create, update, patch], resources: [configmaps] }
      action: allow
    - name: no-deletes
      description: agents never delete
      kubernetes: { verbs: [delete, deletecollection] }
      action: deny
    - name: exec-in-debug-pod
      kubernetes: { verbs: [create], resources: [pods/exec], names: [debug-0] }
      action: allow
    - name: exec-needs-approval
      kubernetes: { verbs: [create], resources: [pods/exec, pods/attach], names: [web-0] }
      action: approve
    - name: impersonate-readonly
      kubernetes: { verbs: [impersonate], resources: [users], names: [readonly] }
      action: allow
`;

export function policyFrom(text: string): Policy {
  const r = parsePolicy(text, 'test-policy.yaml');
  if (!r.policy) throw new Error(r.errors.map((e) => `${e.line}:${e.col} ${e.message}`).join('\n'));
  return r.policy;
}

export interface Harness {
  double: KubeApiDouble;
  proxy: KubernetesProxy;
  dir: string;
  identityDir: string;
  kubeconfig: string;
  audit: AuditWriter;
  auditFile: string;
  sessionDir: string;
  upstreamTokenFile: string;
  kubectl(bin: string, args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  events(): Promise<AuditRecord[]>;
  token(): Promise<string>;
  setPolicy(text: string): void;
  stop(): Promise<void>;
}

export async function startHarness(
  opts: { policy?: string; config?: Partial<KubernetesConfig>; double?: KubeApiDouble; wrapAudit?: (sink: AuditSink) => AuditSink; approvals?: ApprovalClient } = {},
): Promise<Harness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-kube-'));
  const double = opts.double ?? (await KubeApiDouble.start());
  const upstreamDir = path.join(dir, 'upstream');
  await mkdir(upstreamDir);
  const upstreamTokenFile = path.join(upstreamDir, 'token');
  await writeFile(upstreamTokenFile, double.token);
  await writeFile(path.join(upstreamDir, 'ca.crt'), double.caPem);
  const identityDir = opts.config?.identityDir ?? path.join(dir, 'identity');
  const sessionDir = path.join(dir, 'sessions');
  const auditFile = path.join(dir, 'audit.jsonl');
  const audit = await openAuditWriter({ file: auditFile, checkpointFile: false });
  let policy = policyFrom(opts.policy ?? TEST_POLICY);
  const source: PolicySource & { set(p: Policy): void } = { current: () => policy, set: (p) => (policy = p) };
  const log = createLogger('kube-test', process.env.AGENTGATE_LOG_LEVEL ?? 'silent');
  const proxy = await startKubernetesProxy(
    {
      listen: '127.0.0.1:0',
      identityDir,
      sessionDir,
      upstream: { server: double.url, caFile: path.join(upstreamDir, 'ca.crt'), tokenFile: upstreamTokenFile },
      ...opts.config,
    } as KubernetesConfig,
    { policy: source, audit: opts.wrapAudit ? opts.wrapAudit(audit) : audit, log, pod: POD, approvals: opts.approvals },
  );
  const kubeconfig = path.join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters:
- name: in-cluster
  cluster:
    server: https://${proxy.address}
    certificate-authority: ${identityDir}/ca.crt
users:
- name: agent
  user:
    tokenFile: ${identityDir}/token
contexts:
- name: agent
  context: { cluster: in-cluster, user: agent, namespace: payments }
current-context: agent
`,
  );
  const h: Harness = {
    double,
    proxy,
    dir,
    identityDir,
    kubeconfig,
    audit,
    auditFile,
    sessionDir,
    upstreamTokenFile,
    kubectl(bin, args, o = {}) {
      return new Promise((resolve) => {
        const child = execFile(
          bin,
          args,
          { env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG: kubeconfig, KUBECACHEDIR: path.join(dir, 'kubecache') }, timeout: o.timeoutMs ?? 30_000 },
          (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
        );
        if (o.input !== undefined) child.stdin?.end(o.input);
        else child.stdin?.end();
      });
    },
    async events() {
      await audit.flush();
      const text = await readFile(auditFile, 'utf8');
      return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord).filter((e) => e.protocol === 'kubernetes');
    },
    setPolicy(text) {
      source.set(policyFrom(text));
    },
    async token() {
      return (await readFile(path.join(identityDir, 'token'), 'utf8')).trim();
    },
    async stop() {
      await proxy.close();
      await audit.close();
      if (!opts.double) await double.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** A Visa test PAN (Luhn-valid) and what the masker makes of it. */
export const PAN = '4111111111111111';
export const PAN_MASKED = '************1111';
