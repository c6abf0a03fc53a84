// `action: approve` in the Kubernetes proxy, end to end: kubectl 1.33 and 1.27 and
// @kubernetes/client-node through the sidecar, the REAL approval service started in-process
// (test/approval/harness.ts: embedded PGlite storage, approvers' tokens from a real
// oidc-provider, the sidecar authenticated with a projected-style service-account token),
// approvers deciding with the shipped `agentgate approvals` CLI or the API.
// API server: the DOUBLE (test/support/kube-api-double.ts).

import { expect } from 'chai';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { ApprovalClient } from '../../../approval/client.js';
import type { ApprovalRequest } from '../../../approval/types.js';
import { startHarness as startApprovalService, startIdp } from '../../approval/harness.js';
import type { Harness as ApprovalService, Idp } from '../../approval/harness.js';
import { freePort } from '../../support/ports.js';
import { KUBECTL_NEW, KUBECTL_OLD, POD, startHarness } from './harness.js';
import type { Harness } from './harness.js';
import type { AuditRecord } from '../../../core/audit/types.js';

const run = promisify(execFile);
const MAIN = path.resolve('dist/cli/main.js');

const POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: kube-approvals }
spec:
  default: deny
  rules:
    - name: read-everything
      kubernetes: { verbs: [get, list, watch] }
      action: allow
    - name: delete-configmaps-needs-approval
      kubernetes: { verbs: [delete], resources: [configmaps] }
      action: approve
      approval: { mode: wait, waitSeconds: 20 }
    - name: delete-secrets-deferred
      kubernetes: { verbs: [delete], resources: [secrets] }
      action: approve
      approval: { mode: defer }
    - name: exec-needs-approval
      kubernetes: { verbs: [create], resources: [pods/exec], names: [web-0] }
      action: approve
      approval: { mode: wait, waitSeconds: 20 }
`;

const seedConfigMap = (h: Harness, name: string) => h.double.put('configmaps', { metadata: { name, namespace: 'payments' }, data: { a: 'b' } });
const seedSecret = (h: Harness, name: string) => h.double.put('secrets', { metadata: { name, namespace: 'payments' }, type: 'Opaque', data: { a: 'Yg==' } });

async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms));
}

describe('kubernetes proxy: approval holds with the real approval service (API server: the double)', function () {
  this.timeout(90_000);
  let idp: Idp;
  let svc: ApprovalService;
  let h: Harness;
  let aliceFile: string;
  let alice: string;

  /** Waits until the service holds a pending request whose operation contains `needle`. */
  async function pendingFor(needle: string): Promise<ApprovalRequest> {
    for (let i = 0; i < 200; i++) {
      const r = await svc.call(alice, 'GET', '/v1/approvals?state=pending');
      const hit = (r.body.items as ApprovalRequest[]).find((x) => x.operation.includes(needle));
      if (hit) return hit;
      await sleep(50);
    }
    throw new Error(`no pending approval for ${needle}`);
  }
  const approvals = (...args: string[]) =>
    run(process.execPath, [MAIN, 'approvals', ...args, '--server', svc.url, '--token-file', aliceFile], { env: { ...process.env, AGENTGATE_LOG_LEVEL: 'error' } });
  const kubeEvents = async (name: string): Promise<AuditRecord[]> => (await h.events()).filter((e) => e.objectRef?.name === name && e.verb === 'delete');

  before(async () => {
    idp = await startIdp();
    svc = await startApprovalService(idp, { name: 'kube-proxy' });
    alice = await svc.approverToken('alice@example.com');
    aliceFile = path.join(idp.dir, 'alice.token');
    fs.writeFileSync(aliceFile, alice);
    h = await startHarness({ policy: POLICY, approvals: await svc.sidecar(POD), config: { approvalRetryAfterSeconds: 1 } });
    h.double.put('namespaces', { metadata: { name: 'payments' } });
  });
  after(async () => {
    await h?.stop();
    await svc?.close();
    await idp?.close();
  });

  it('holds `kubectl delete` (1.33) until an approver approves with the CLI, then forwards it', async () => {
    seedConfigMap(h, 'held-1');
    const kubectl = h.kubectl(KUBECTL_NEW, ['delete', 'configmap', 'held-1']);
    const pending = await pendingFor('/configmaps/held-1');
    expect(pending.operation.split('\n').slice(0, 2)).to.deep.equal([
      'DELETE /api/v1/namespaces/payments/configmaps/held-1',
      'delete configmaps "held-1" in namespace "payments"',
    ]);
    expect(pending).to.deep.include({ protocol: 'kubernetes', connection: 'kubernetes', rule: 'delete-configmaps-needs-approval', scope: 'once', mode: 'wait' });
    expect(pending.requester.pod).to.deep.equal(POD);
    expect(h.double.get('configmaps', 'payments', 'held-1')).to.not.equal(undefined);
    const out = await approvals('approve', pending.id, '--reason', 'OPS-42');
    expect(out.stdout).to.contain(pending.id);
    const r = await kubectl;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('configmap "held-1" deleted\n');
    expect(h.double.get('configmaps', 'payments', 'held-1')).to.equal(undefined);
    const [ev] = await kubeEvents('held-1');
    expect(ev!.responseStatus).to.deep.equal({ metadata: {}, code: 200 });
    expect(ev!.approval).to.deep.equal({ id: pending.id, approver: 'alice@example.com', state: 'used' });
    expect(ev!.decision).to.deep.include({ action: 'approve', rule: 'delete-configmaps-needs-approval' });
  });

  it('answers kubectl 403 naming the approval when the approver denies', async () => {
    seedConfigMap(h, 'held-2');
    const kubectl = h.kubectl(KUBECTL_NEW, ['delete', 'configmap', 'held-2']);
    const pending = await pendingFor('/configmaps/held-2');
    await approvals('deny', pending.id, '--reason', 'not during the freeze');
    const r = await kubectl;
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(
      `Error from server (Forbidden): configmaps "held-2" is forbidden: approval ${pending.id} was denied by alice@example.com: not during the freeze (rule 'delete-configmaps-needs-approval')\n`,
    );
    expect(h.double.get('configmaps', 'payments', 'held-2')).to.not.equal(undefined);
    const [ev] = await kubeEvents('held-2');
    expect(ev!.responseStatus!.code).to.equal(403);
    expect(ev!.approval).to.deep.equal({ id: pending.id, approver: 'alice@example.com', state: 'denied' });
  });

  for (const [label, kubectl] of [['1.33', KUBECTL_NEW], ['1.27', KUBECTL_OLD]] as const) {
    it(`defer: kubectl ${label} gets 429 + Retry-After while pending, retries by itself and succeeds once approved`, async () => {
      const name = `deferred-${label}`;
      seedSecret(h, name);
      const run = h.kubectl(kubectl, ['delete', 'secret', name]);
      const pending = await pendingFor(`/secrets/${name}`);
      expect(pending.mode).to.equal('defer');
      await sleep(1500); // at least one more 429 and retry
      await svc.call(alice, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'ok' });
      const r = await run;
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(`secret "${name}" deleted\n`);
      expect(h.double.get('secrets', 'payments', name)).to.equal(undefined);
      const evs = await kubeEvents(name);
      const codes = evs.map((e) => e.responseStatus!.code);
      expect(codes.slice(0, -1)).to.satisfy((c: number[]) => c.length >= 2 && c.every((x) => x === 429));
      expect(codes.at(-1)).to.equal(200);
      expect(evs.every((e) => e.approval?.id === pending.id)).to.equal(true);
      expect(evs.at(-1)!.approval).to.deep.equal({ id: pending.id, approver: 'alice@example.com', state: 'used' });
      // One request for all the retries: the service reused the pending one.
      const all = await svc.call(alice, 'GET', '/v1/approvals');
      expect((all.body.items as ApprovalRequest[]).filter((x) => x.operation.includes(`/secrets/${name}`))).to.have.length(1);
    });
  }

  it('defer: the retry after a deny gets 403 naming the approval, not a fresh 429', async () => {
    seedSecret(h, 'deferred-denied');
    const kubectl = h.kubectl(KUBECTL_NEW, ['delete', 'secret', 'deferred-denied']);
    const pending = await pendingFor('/secrets/deferred-denied');
    await svc.call(alice, 'POST', `/v1/approvals/${pending.id}/deny`, { reason: 'no' });
    const r = await kubectl;
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(
      `Error from server (Forbidden): secrets "deferred-denied" is forbidden: approval ${pending.id} was denied by alice@example.com: no (rule 'delete-secrets-deferred')\n`,
    );
    expect(h.double.get('secrets', 'payments', 'deferred-denied')).to.not.equal(undefined);
  });

  for (const [label, kubectl] of [['1.33 (WebSocket)', KUBECTL_NEW], ['1.27 (SPDY/3.1)', KUBECTL_OLD]] as const) {
    it(`holds kubectl ${label} exec until approved, then relays the session`, async () => {
      h.double.put('pods', { metadata: { name: 'web-0', namespace: 'payments' } });
      const word = `approved-${label.slice(0, 4)}`;
      const r = h.kubectl(kubectl, ['exec', 'web-0', '--', 'echo', word]);
      const pending = await pendingFor(`echo&command=${word}`);
      expect(pending.operation.split('\n')[1]).to.equal('create pods "web-0" (pods/exec) in namespace "payments"');
      expect(h.double.execs.map((e) => e.command[1])).not.to.include(word);
      await svc.call(alice, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'ok' });
      const out = await r;
      expect(out.code, out.stderr).to.equal(0);
      expect(out.stdout).to.equal(`${word}\n`);
      expect(h.double.execs.at(-1)).to.deep.include({ command: ['echo', word] });
    });
  }

  describe('with @kubernetes/client-node', () => {
    let kc: k8s.KubeConfig;
    before(async () => {
      kc = new k8s.KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'proxy', server: `https://${h.proxy.address}`, caFile: path.join(h.identityDir, 'ca.crt') }],
        users: [{ name: 'agent', token: await h.token() }],
        contexts: [{ name: 'agent', cluster: 'proxy', user: 'agent', namespace: 'payments' }],
        currentContext: 'agent',
      });
    });

    it('deleteNamespacedConfigMap is held, approved through the API, and returns the server answer', async () => {
      seedConfigMap(h, 'held-node');
      const api = kc.makeApiClient(k8s.CoreV1Api);
      const call = api.deleteNamespacedConfigMap({ name: 'held-node', namespace: 'payments' });
      const pending = await pendingFor('/configmaps/held-node');
      await svc.call(alice, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'ok' });
      const st = await call;
      expect(st).to.deep.include({ kind: 'Status', status: 'Success' });
      expect(h.double.get('configmaps', 'payments', 'held-node')).to.equal(undefined);
    });

    it('deleteNamespacedSecret (defer) fails with a 429 Status naming the approval and how to approve', async () => {
      seedSecret(h, 'deferred-node');
      const api = kc.makeApiClient(k8s.CoreV1Api);
      const err = await api.deleteNamespacedSecret({ name: 'deferred-node', namespace: 'payments' }).then(() => undefined, (e: unknown) => e as k8s.ApiException<string>);
      expect(err?.code).to.equal(429);
      const body = JSON.parse(err!.body) as { reason: string; message: string; details: { retryAfterSeconds: number } };
      const pending = await pendingFor('/secrets/deferred-node');
      expect(body.reason).to.equal('TooManyRequests');
      expect(body.details.retryAfterSeconds).to.equal(1);
      expect(body.message).to.equal(
        `secrets "deferred-node" needs approval: rule 'delete-secrets-deferred' requires a human approval; approval ${pending.id} is needed: an approver runs \`agentgate approvals approve ${pending.id}\`; retry the request once it is approved (approval ${pending.id} is pending)`,
      );
      await svc.call(alice, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'ok' });
      await api.deleteNamespacedSecret({ name: 'deferred-node', namespace: 'payments' });
      expect(h.double.get('secrets', 'payments', 'deferred-node')).to.equal(undefined);
    });
  });

  it('passes the Agentgate-Justification header to approvers and never upstream', async () => {
    seedConfigMap(h, 'justified');
    const done = raw('DELETE', '/api/v1/namespaces/payments/configmaps/justified', { 'agentgate-justification': 'rotating card 4111111111111111 data' });
    const pending = await pendingFor('/configmaps/justified');
    expect(pending.justification).to.equal('rotating card ************1111 data');
    await svc.call(alice, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'ok' });
    expect((await done).status).to.equal(200);
    expect(h.double.requests.filter((r) => r.url.endsWith('/justified')).map((r) => r.headers['agentgate-justification'])).to.deep.equal([undefined]);
  });

  it('cancels the approval request when the client disconnects while held', async () => {
    seedConfigMap(h, 'abandoned');
    const ac = new AbortController();
    const done = raw('DELETE', '/api/v1/namespaces/payments/configmaps/abandoned', {}, ac.signal).catch((e: Error) => e);
    const pending = await pendingFor('/configmaps/abandoned');
    ac.abort();
    await done;
    let state = '';
    for (let i = 0; i < 100 && state !== 'cancelled'; i++) {
      state = (await svc.call(alice, 'GET', `/v1/approvals/${pending.id}`)).body.state as string;
      await sleep(50);
    }
    expect(state).to.equal('cancelled');
    expect(h.double.get('configmaps', 'payments', 'abandoned')).to.not.equal(undefined);
    let ev: AuditRecord | undefined;
    for (let i = 0; i < 40 && !ev; i++, await sleep(50)) ev = (await kubeEvents('abandoned'))[0];
    expect(ev!.responseStatus!.code).to.equal(499);
    expect(ev!.approval).to.deep.equal({ id: pending.id, state: 'cancelled' });
  });

  function raw(method: string, p: string, headers: Record<string, string>, signal?: AbortSignal): Promise<{ status: number; body: string }> {
    return h.token().then(
      (token) =>
        new Promise((resolve, reject) => {
          const [host, port] = [h.proxy.address.replace(/:\d+$/, ''), Number(h.proxy.address.split(':').pop())];
          const req = https.request(
            { host, port, method, path: p, ca: fs.readFileSync(path.join(h.identityDir, 'ca.crt')), headers: { authorization: `Bearer ${token}`, ...headers }, ...(signal ? { signal } : {}) },
            (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c.toString()));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on('error', reject);
          req.end();
        }),
    );
  }
});

describe('kubernetes proxy: approval service down or absent fails closed (API server: the double)', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    const port = await freePort();
    h = await startHarness({ policy: POLICY, approvals: new ApprovalClient({ url: `http://127.0.0.1:${port}`, token: 'x', timeoutMs: 2000 }) });
    h.double.put('namespaces', { metadata: { name: 'payments' } });
    seedConfigMap(h, 'cm');
    seedSecret(h, 'sec');
  });
  after(async () => h?.stop());

  for (const [what, kind, name, rule] of [['wait', 'configmap', 'cm', 'delete-configmaps-needs-approval'], ['defer', 'secret', 'sec', 'delete-secrets-deferred']] as const) {
    it(`refuses a ${what}-mode delete with 403 saying the approval service is unreachable`, async () => {
      const r = await h.kubectl(KUBECTL_NEW, ['delete', kind, name]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(
        new RegExp(
          `^Error from server \\(Forbidden\\): ${kind}s "${name}" is forbidden: approval required, but no decision could be obtained \\(fail closed\\): the approval service at http://127\\.0\\.0\\.1:\\d+ is unreachable \\(ECONNREFUSED\\); the operation is denied \\(rule '${rule}'\\)\\n$`,
        ),
      );
      expect(h.double.get(`${kind}s`, 'payments', name)).to.not.equal(undefined);
    });
  }

  it('refuses with 403 when the service answers something that is not an approval', async () => {
    const http = await import('node:http');
    const nonsense = http.createServer((_q, s) => s.end('{"hello":"world"}'));
    await new Promise<void>((r) => nonsense.listen(0, '127.0.0.1', r));
    const h2 = await startHarness({
      policy: POLICY,
      double: h.double,
      approvals: new ApprovalClient({ url: `http://127.0.0.1:${(nonsense.address() as { port: number }).port}`, token: 'x' }),
    });
    try {
      const r = await h2.kubectl(KUBECTL_NEW, ['delete', 'configmap', 'cm']);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('answered with a body that is not an approval request; the operation is denied');
    } finally {
      await h2.stop();
      nonsense.close();
    }
  });
});
