// The approval service end to end against the REAL kube-apiserver v1.20.2 (the shared
// control plane of test/support/kube-cluster.ts, not a double). Sidecars authenticate with
// pod-bound service-account tokens from the real TokenRequest API (audience `agentgate`,
// boundObjectRef to a real Pod, so the token carries the `kubernetes.io` pod claims), and
// the service verifies them two ways, each a real deployment:
//   - JWKS: `agentgate approval` as a child process, as shipped, fetching the issuer's
//     `/openid/v1/jwks` itself — anonymously, as an in-cluster service with no API-server
//     credentials would, which a 1.20 cluster allows only once `system:service-account-issuer-discovery`
//     is bound to `system:unauthenticated` (the suite creates that ClusterRoleBinding).
//   - TokenReview: the service asks the real API server through @kubernetes/client-node, as a
//     ServiceAccount bound to `system:auth-delegator`; this is what sees a deleted pod.
// Approvers authenticate with JWTs from a real OpenID provider (oidc-provider 8) and decide with
// the shipped `agentgate approvals` CLI.
//
// Not here: `kubectl delete` held by the sidecar's Kubernetes proxy until approved (the proxy's
// approval wiring is the sidecar side, tested in its own suites).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import * as k8s from '@kubernetes/client-node';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import { ApprovalClient, ApprovalRefused, ApprovalUnavailable } from '../../approval/client.js';
import { parseApprovalConfig } from '../../approval/config.js';
import { startApprovalServer, type RunningApprovalServer } from '../../approval/server.js';
import type { ApprovalRequest } from '../../approval/types.js';
import { freePort } from '../support/ports.js';
import { startOidcProvider, type OidcProviderHandle } from '../support/oidc-provider.js';
import { sharedKubeCluster, stopSharedKubeCluster, type KubeCluster } from '../support/kube-cluster.js';

const exec = promisify(execFile);
const SETPRIV = '/usr/bin/setpriv';
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.js');

after(stopSharedKubeCluster);

const NS = 'e2e-approval';
const SA = 'agent';
const APPROVER_AUDIENCE = 'https://approvals.agentgate.test';
const DISCOVERY_BINDING = 'agentgate-e2e-service-account-issuer-discovery';
const REVIEWER_BINDING = 'agentgate-e2e-approval-auth-delegator';
const op = (n: number) => ({
  protocol: 'kubernetes' as const,
  connection: 'e2e',
  operation: `DELETE /api/v1/namespaces/${NS}/pods/web-${n}`,
  rule: 'approve-pod-deletes',
  approverGroups: ['sre'],
});

interface Pod { name: string; uid: string }

describe('approval service e2e on the REAL kube-apiserver v1.20.2: sidecars authenticate with pod-bound TokenRequest tokens', function () {
  this.timeout(120_000);
  let cluster: KubeCluster;
  let core: k8s.CoreV1Api;
  let rbac: k8s.RbacAuthorizationV1Api;
  let authn: k8s.AuthenticationV1Api;
  let dispatcher: Agent;
  let oidc: OidcProviderHandle;
  let dir: string;
  let podA: Pod;
  let podB: Pod;
  let jwksIssuer: { issuer: string; jwks_uri: string };
  let jwksService: { url: string; child: ChildProcess; stderr: () => string };
  let reviewService: RunningApprovalServer;

  /** A pod-bound token from the real TokenRequest API, as the kubelet projects it. */
  const podToken = async (pod: Pod, audiences = ['agentgate']) => {
    const tr = await core.createNamespacedServiceAccountToken({
      name: SA,
      namespace: NS,
      body: { spec: { audiences, expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid } } },
    });
    return tr.status!.token;
  };
  const createPod = async (name: string): Promise<Pod> => {
    const p = await core.createNamespacedPod({
      namespace: NS,
      body: { metadata: { name }, spec: { serviceAccountName: SA, containers: [{ name: 'agent', image: 'busybox' }] } },
    });
    return { name, uid: p.metadata!.uid! };
  };
  /** A raw API call, to see status codes and error bodies the client turns into exceptions. */
  const call = async (base: string, token: string, method: string, p: string, body?: unknown) => {
    const res = await fetch(`${base}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string } & Partial<ApprovalRequest> };
  };
  const anonymousGet = async (p: string) => {
    const res = await request(`${cluster.server}${p}`, { dispatcher });
    const text = await res.body.text();
    return { status: res.statusCode, text };
  };
  const approversCli = async (args: string[], server: string) => {
    const tokenFile = path.join(dir, 'alice.token');
    fs.writeFileSync(tokenFile, await oidc.token('alice@example.com'), { mode: 0o600 });
    const { stdout } = await exec(process.execPath, [CLI, 'approvals', ...args, '--server', server, '--token-file', tokenFile, '-o', 'json']);
    return JSON.parse(stdout) as ApprovalRequest;
  };

  before(async function () {
    this.timeout(60 * 60_000); // the first run on a machine builds the control plane
    cluster = await sharedKubeCluster();
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    rbac = cluster.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    authn = cluster.kubeConfig.makeApiClient(k8s.AuthenticationV1Api);
    dispatcher = new Agent({ connect: { ca: cluster.caPem } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-e2e-approval-'));
    oidc = await startOidcProvider({ audience: APPROVER_AUDIENCE, principals: { 'alice@example.com': ['sre'] } });
    await cluster.createNamespace(NS);
    await cluster.createServiceAccount(NS, SA);
    podA = await createPod('agent-a');
    podB = await createPod('agent-b');
  });

  after(async () => {
    if (jwksService?.child.exitCode === null) {
      const exited = new Promise((r) => jwksService.child.once('exit', r));
      jwksService.child.kill('SIGTERM');
      await exited;
    }
    await reviewService?.close();
    await oidc?.close();
    await dispatcher?.close();
    for (const name of [DISCOVERY_BINDING, REVIEWER_BINDING]) await rbac?.deleteClusterRoleBinding({ name }).catch(() => undefined);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('the real issuer, as the service meets it', () => {
    it('refuses anonymous reads of /openid/v1/jwks until system:service-account-issuer-discovery is bound to system:unauthenticated', async () => {
      const before = await anonymousGet('/openid/v1/jwks');
      expect(before.status).to.equal(403);
      expect(JSON.parse(before.text).message).to.equal('forbidden: User "system:anonymous" cannot get path "/openid/v1/jwks"');
      await rbac.createClusterRoleBinding({
        body: {
          metadata: { name: DISCOVERY_BINDING },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:service-account-issuer-discovery' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
        },
      });
      // RBAC reads bindings through an informer: the new one takes effect within moments.
      let after = await anonymousGet('/openid/v1/jwks');
      for (let i = 0; i < 50 && after.status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await anonymousGet('/openid/v1/jwks');
      }
      expect(after.status).to.equal(200);
      expect((JSON.parse(after.text) as { keys: { kty: string; alg: string }[] }).keys.map((k) => [k.kty, k.alg])).to.deep.equal([['RSA', 'RS256']]);
    });

    it('names its issuer and JWKS in the anonymous OpenID discovery document', async () => {
      const disc = await anonymousGet('/.well-known/openid-configuration');
      expect(disc.status).to.equal(200);
      jwksIssuer = JSON.parse(disc.text) as { issuer: string; jwks_uri: string };
      expect(jwksIssuer.issuer).to.equal(cluster.issuer);
      expect(jwksIssuer.jwks_uri).to.equal(`${cluster.server}/openid/v1/jwks`);
    });

    it('issues a TokenRequest token bound to the real pod: audience agentgate, kubernetes.io pod name and uid', async () => {
      const claims = decodeJwt(await podToken(podA));
      expect(claims.iss).to.equal(cluster.issuer);
      expect(claims.aud).to.deep.equal(['agentgate']);
      expect(claims.sub).to.equal(`system:serviceaccount:${NS}:${SA}`);
      expect((claims['kubernetes.io'] as { namespace: string; pod: unknown }).namespace).to.equal(NS);
      expect((claims['kubernetes.io'] as { pod: unknown }).pod).to.deep.equal({ name: podA.name, uid: podA.uid });
    });
  });

  describe('verified through the real issuer\'s JWKS (`agentgate approval` with sidecars.jwksUri, fetched anonymously)', () => {
    before(async function () {
      this.timeout(60_000);
      if (!jwksIssuer) this.skip(); // the discovery spec above failed; its failure is the report
      const port = await freePort();
      const file = path.join(dir, 'approval-jwks.yaml');
      fs.writeFileSync(file, `listen: 127.0.0.1:${port}
metrics: false
publicUrl: http://127.0.0.1:${port}
approvers:
  issuer: ${oidc.issuer}
  audience: ${APPROVER_AUDIENCE}
sidecars:
  issuer: ${jwksIssuer.issuer}
  audience: agentgate
  jwksUri: ${jwksIssuer.jwks_uri}
`);
      fs.writeFileSync(path.join(dir, 'ca.crt'), cluster.caPem);
      let stderr = '';
      // The cluster CA is trusted as a pod trusts it (its service-account ca.crt); nothing else is given.
      // setpriv --pdeathsig: the kernel stops the service if the runner dies before after() runs.
      const argv = [process.execPath, CLI, 'approval', '--config', file];
      if (fs.existsSync(SETPRIV)) argv.unshift(SETPRIV, '--pdeathsig', 'KILL', '--');
      const child = spawn(argv[0]!, argv.slice(1), {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.crt') },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      jwksService = { url: `http://127.0.0.1:${port}`, child, stderr: () => stderr };
      for (let i = 0; ; i++) {
        if (child.exitCode !== null) throw new Error(`agentgate approval exited ${child.exitCode}: ${stderr}`);
        const ok = await fetch(`${jwksService.url}/readyz`).then((r) => r.ok, () => false);
        if (ok) break;
        if (i > 200) throw new Error(`agentgate approval not ready after 20 s: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });

    let created: ApprovalRequest;

    it('lets the sidecar of pod A create a request and read it back, recorded with the real pod\'s identity', async () => {
      const a = new ApprovalClient({ url: jwksService.url, token: await podToken(podA) });
      created = await a.create(op(1));
      expect(created.state).to.equal('pending');
      expect(created.requester.pod).to.deep.equal({ namespace: NS, name: podA.name, uid: podA.uid, serviceAccount: SA });
      expect(created.requester.serviceAccountSubject).to.equal(`system:serviceaccount:${NS}:${SA}`);
      const read = await a.get(created.id);
      expect(read.id).to.equal(created.id);
      expect(read.operation).to.equal(op(1).operation);
    });

    it('refuses pod B\'s sidecar (same namespace and service account) pod A\'s request: 403 forbidden', async () => {
      const res = await call(jwksService.url, await podToken(podB), 'GET', `/v1/approvals/${created.id}`);
      expect(res.status).to.equal(403);
      expect(res.body.code).to.equal('forbidden');
      expect(res.body.message).to.equal(`approval request ${created.id} belongs to another pod; a sidecar may read only its own pod's requests`);
    });

    it('refuses a pod-bound token of another audience: 401 unauthenticated', async () => {
      const res = await call(jwksService.url, await podToken(podA, ['someone-else']), 'POST', '/v1/approvals', op(2));
      expect(res.status).to.equal(401);
      expect(res.body.code).to.equal('unauthenticated');
      expect(res.body.message).to.equal('sidecar token rejected: unexpected "aud" claim value');
    });

    it('lets an approver (OIDC token from oidc-provider) approve with `agentgate approvals approve`; pod A\'s waiting client sees approved and uses it once', async () => {
      const a = new ApprovalClient({ url: jwksService.url, token: await podToken(podA) });
      const r = await a.create(op(3));
      const waiting = a.waitForDecision(r.id, { timeoutMs: 30_000 });
      const decided = await approversCli(['approve', r.id, '--reason', 'CHG-1234'], jwksService.url);
      expect(decided.state).to.equal('approved');
      expect(decided.decisions.map((d) => [d.approver, d.verdict, d.reason])).to.deep.equal([['alice@example.com', 'approve', 'CHG-1234']]);
      const seen = await waiting;
      expect(seen.state).to.equal('approved');
      expect((await a.use(r.id)).state).to.equal('used');
      await a.use(r.id).then(
        () => expect.fail('a once approval was used twice'),
        (e: unknown) => expect((e as ApprovalRefused).code).to.equal('not-approved'),
      );
    });

    it('cannot see that a token\'s pod was deleted: JWKS alone accepts it until it expires (why TokenReview exists)', async () => {
      const gone = await createPod('agent-gone-jwks');
      const token = await podToken(gone);
      await core.deleteNamespacedPod({ name: gone.name, namespace: NS, gracePeriodSeconds: 0 });
      const r = await new ApprovalClient({ url: jwksService.url, token }).create(op(4));
      expect(r.requester.pod.uid).to.equal(gone.uid);
    });
  });

  describe('verified through TokenReview on the real API server (@kubernetes/client-node, sidecars.tokenReview)', () => {
    before(async function () {
      this.timeout(60_000);
      // The service's own identity: a ServiceAccount allowed to create TokenReviews and nothing else.
      await cluster.createServiceAccount(NS, 'agentgate-approval');
      await rbac.createClusterRoleBinding({
        body: {
          metadata: { name: REVIEWER_BINDING },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' },
          subjects: [{ kind: 'ServiceAccount', name: 'agentgate-approval', namespace: NS }],
        },
      });
      const kubeconfig = await cluster.writeKubeconfig(path.join(dir, 'approval.kubeconfig'), { token: await cluster.requestToken(NS, 'agentgate-approval') });
      const file = path.join(dir, 'approval-tokenreview.yaml');
      const yaml = `listen: 127.0.0.1:0
metrics: false
approvers:
  issuer: ${oidc.issuer}
  audience: ${APPROVER_AUDIENCE}
sidecars:
  issuer: ${cluster.issuer}
  audience: agentgate
  tokenReview:
    kubeconfig: ${kubeconfig}
`;
      fs.writeFileSync(file, yaml);
      reviewService = await startApprovalServer(parseApprovalConfig(yaml, file));
      // RBAC sees the new binding through an informer: wait until the service's TokenReviews are allowed.
      const probe = await podToken(podA);
      for (let i = 0; ; i++) {
        const res = await call(reviewService.url, probe, 'GET', '/v1/approvals');
        if (res.status === 200) break;
        if (i > 100) throw new Error(`TokenReview never allowed: ${res.status} ${res.body.message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });

    let created: ApprovalRequest;

    it('lets the sidecar of pod A create a request and read it back, with the pod the API server names', async () => {
      const a = new ApprovalClient({ url: reviewService.url, token: await podToken(podA) });
      created = await a.create(op(11));
      expect(created.state).to.equal('pending');
      expect(created.requester.pod).to.deep.equal({ namespace: NS, name: podA.name, uid: podA.uid, serviceAccount: SA });
      expect((await a.get(created.id)).id).to.equal(created.id);
    });

    it('refuses pod B\'s sidecar pod A\'s request: 403 forbidden', async () => {
      const b = new ApprovalClient({ url: reviewService.url, token: await podToken(podB) });
      await b.get(created.id).then(
        () => expect.fail('pod B read pod A\'s request'),
        (e: unknown) => {
          expect(e).to.be.instanceOf(ApprovalRefused);
          expect((e as ApprovalRefused).code).to.equal('forbidden');
        },
      );
    });

    it('refuses a pod-bound token of another audience: the API server\'s TokenReview says so, 401 unauthenticated', async () => {
      const res = await call(reviewService.url, await podToken(podA, ['someone-else']), 'POST', '/v1/approvals', op(12));
      expect(res.status).to.equal(401);
      expect(res.body.code).to.equal('unauthenticated');
      expect(res.body.message).to.equal('sidecar token rejected by TokenReview: [invalid bearer token, token audiences ["someone-else"] is invalid for the target audiences ["agentgate"]]');
    });

    it('refuses a token whose bound pod was deleted: the real API server invalidates it', async () => {
      const gone = await createPod('agent-gone');
      const token = await podToken(gone);
      const live = await authn.createTokenReview({ body: { spec: { token, audiences: ['agentgate'] } } });
      expect(live.status?.authenticated).to.equal(true); // valid while the pod exists
      await core.deleteNamespacedPod({ name: gone.name, namespace: NS, gracePeriodSeconds: 0 });
      // kube-apiserver caches successful token authentications for 10 s (its TokenSuccessCacheTTL), and
      // the review above was one: wait until the server itself says no, then ask the service, which has
      // never seen this token (so its own cache cannot answer).
      let review = live;
      for (let i = 0; i < 300 && review.status?.authenticated; i++) {
        await new Promise((r) => setTimeout(r, 100));
        review = await authn.createTokenReview({ body: { spec: { token, audiences: ['agentgate'] } } });
      }
      expect(review.status?.authenticated).to.not.equal(true);
      const res = await call(reviewService.url, token, 'POST', '/v1/approvals', op(13));
      expect(res.status).to.equal(401);
      expect(res.body.code).to.equal('unauthenticated');
      expect(res.body.message).to.equal('sidecar token rejected by TokenReview: [invalid bearer token, Token has been invalidated]');
    });

    it('tells the sidecar\'s client the service refused to answer, so the operation is denied (fail closed)', async () => {
      const res = new ApprovalClient({ url: reviewService.url, token: await podToken(podA, ['someone-else']) }).create(op(14));
      await res.then(
        () => expect.fail('created with a wrong-audience token'),
        (e: unknown) => expect(e).to.be.instanceOf(ApprovalUnavailable),
      );
    });

    it('lets an approver approve with `agentgate approvals approve`; the waiting sidecar client sees approved', async () => {
      const a = new ApprovalClient({ url: reviewService.url, token: await podToken(podA) });
      const r = await a.create(op(15));
      const waiting = a.waitForDecision(r.id, { timeoutMs: 30_000 });
      const decided = await approversCli(['approve', r.id, '--reason', 'CHG-5678'], reviewService.url);
      expect(decided.state).to.equal('approved');
      expect((await waiting).state).to.equal('approved');
    });
  });
});
