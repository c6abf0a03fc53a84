// The whole sidecar (sidecar/run.ts startSidecar, from a YAML config with `kubernetes` and
// `approval` blocks) wires the approval client into the Kubernetes proxy: kubectl 1.33's
// delete is held until an approver approves through the REAL approval service
// (test/approval/harness.ts). API server: the DOUBLE (test/support/kube-api-double.ts).

import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseSidecarConfig } from '../../../sidecar/config.js';
import { startSidecar } from '../../../sidecar/run.js';
import type { RunningSidecar } from '../../../sidecar/run.js';
import { createLogger } from '../../../core/log.js';
import type { ApprovalRequest } from '../../../approval/types.js';
import { startHarness as startApprovalService, startIdp } from '../../approval/harness.js';
import type { Harness as ApprovalService, Idp } from '../../approval/harness.js';
import { KubeApiDouble } from '../../support/kube-api-double.js';
import { KUBECTL_NEW, POD } from './harness.js';

const POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: sidecar-approvals }
spec:
  rules:
    - name: read
      kubernetes: { verbs: [get, list] }
      action: allow
    - name: delete-needs-approval
      kubernetes: { verbs: [delete], resources: [configmaps] }
      action: approve
      approval: { mode: wait, waitSeconds: 20 }
`;

const ENV = { AGENTGATE_POD_NAMESPACE: POD.namespace, AGENTGATE_POD_NAME: POD.name, AGENTGATE_POD_UID: POD.uid, AGENTGATE_SERVICE_ACCOUNT: POD.serviceAccount };

describe('agentgate sidecar with kubernetes and approval blocks (API server: the double)', function () {
  this.timeout(60_000);
  let idp: Idp;
  let svc: ApprovalService;
  let double: KubeApiDouble;
  let sidecar: RunningSidecar;
  let dir: string;
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    for (const [k, v] of Object.entries(ENV)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-sidecar-approval-'));
    idp = await startIdp();
    svc = await startApprovalService(idp, { name: 'sidecar' });
    double = await KubeApiDouble.start();
    double.put('namespaces', { metadata: { name: 'payments' } });
    await writeFile(path.join(dir, 'upstream-token'), double.token);
    await writeFile(path.join(dir, 'upstream-ca.crt'), double.caPem);
    await writeFile(path.join(dir, 'approval-token'), await idp.sa.token(POD));
    await writeFile(path.join(dir, 'policy.yaml'), POLICY);
    const file = path.join(dir, 'sidecar.yaml');
    // The kubernetes block's paths are absolute: parseSidecarConfig does not resolve them
    // against the config file's directory yet (reported to sidecar/config.ts's owner).
    const yaml = `kubernetes:
  listen: 127.0.0.1:0
  identityDir: ${dir}/identity
  upstream: { server: ${double.url}, caFile: ${dir}/upstream-ca.crt, tokenFile: ${dir}/upstream-token }
approval:
  url: ${svc.url}
  tokenFile: ./approval-token
policy: { file: ./policy.yaml }
audit: { file: ./audit.jsonl }
`;
    await writeFile(file, yaml);
    sidecar = await startSidecar(parseSidecarConfig(yaml, file), { servePorts: false, log: createLogger('sidecar-test', 'silent') });
    await writeFile(
      path.join(dir, 'kubeconfig'),
      `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://${sidecar.kubernetes!.address}", certificate-authority: ${path.join(dir, 'identity', 'ca.crt')} } }]
users: [{ name: u, user: { tokenFile: ${path.join(dir, 'identity', 'token')} } }]
contexts: [{ name: x, context: { cluster: c, user: u, namespace: payments } }]
current-context: x
`,
    );
  });
  after(async () => {
    await sidecar?.stop();
    await double?.close();
    await svc?.close();
    await idp?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('holds kubectl delete until approved, then deletes', async () => {
    double.put('configmaps', { metadata: { name: 'cards', namespace: 'payments' }, data: { a: 'b' } });
    const kubectl = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(KUBECTL_NEW, ['delete', 'configmap', 'cards'], { env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG: path.join(dir, 'kubeconfig') } }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      ),
    );
    const alice = await svc.approverToken('alice@example.com');
    let pending: ApprovalRequest | undefined;
    for (let i = 0; i < 200 && !pending; i++) {
      pending = ((await svc.call(alice, 'GET', '/v1/approvals?state=pending')).body.items as ApprovalRequest[]).find((r) => r.operation.includes('/configmaps/cards'));
      if (!pending) await new Promise((r) => setTimeout(r, 50));
    }
    expect(pending?.requester.pod).to.deep.equal(POD);
    expect(double.get('configmaps', 'payments', 'cards')).to.not.equal(undefined);
    await svc.call(alice, 'POST', `/v1/approvals/${pending!.id}/approve`, { reason: 'ok' });
    const r = await kubectl;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('configmap "cards" deleted\n');
    expect(double.get('configmaps', 'payments', 'cards')).to.equal(undefined);
  });
});
