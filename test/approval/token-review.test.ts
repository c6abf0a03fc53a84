// Sidecar authentication through TokenReview, with the real @kubernetes/client-node
// client over HTTPS. The API server here is a TEST DOUBLE of one endpoint, POST
// /apis/authentication.k8s.io/v1/tokenreviews, answering as kube-apiserver does for
// a pod-bound service-account token (username system:serviceaccount:NS:SA, extra
// authentication.kubernetes.io/pod-name and pod-uid, audiences echoed) and with
// `authenticated: false` plus an error otherwise. The same against the real API
// server is in test/e2e.

import { expect } from 'chai';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Authenticator, kubernetesTokenReviewer } from '../../approval/auth.js';
import { ApprovalError } from '../../approval/types.js';
import { makeServerCertificate } from '../support/postgres.js';

describe('sidecar authentication by TokenReview', function () {
  this.timeout(30_000);
  let server: https.Server;
  let dir: string;
  let auth: Authenticator;
  const seen: { authorization?: string; body: any }[] = [];
  // A projected token is a JWT with the kubernetes.io claim; only the API server knows whether it is valid.
  const podToken = (name: string) => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    return `${b64({ alg: 'RS256' })}.${b64({ iss: 'https://kubernetes.default.svc', 'kubernetes.io': { namespace: 'payments' }, name })}.c2ln`;
  };
  const GOOD = podToken('good');

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-tokenreview-'));
    const pki = await makeServerCertificate(dir);
    server = https.createServer({ cert: fs.readFileSync(pki.certFile), key: fs.readFileSync(pki.keyFile) }, (req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        const body = JSON.parse(data);
        seen.push({ authorization: req.headers.authorization, body });
        const ok = req.method === 'POST' && req.url === '/apis/authentication.k8s.io/v1/tokenreviews' && body.spec.token === GOOD;
        const status = ok
          ? {
              authenticated: true,
              audiences: body.spec.audiences,
              user: {
                username: 'system:serviceaccount:payments:agent',
                uid: 'b7a1c9d0-0000-4000-8000-000000000001',
                groups: ['system:serviceaccounts', 'system:serviceaccounts:payments', 'system:authenticated'],
                extra: {
                  'authentication.kubernetes.io/pod-name': ['agent-a-5f7d'],
                  'authentication.kubernetes.io/pod-uid': ['11111111-aaaa-4aaa-8aaa-111111111111'],
                },
              },
            }
          : { user: {}, error: '[invalid bearer token, token lookup failed]' };
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: body.spec, status }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:${(server.address() as AddressInfo).port}", certificate-authority: "${pki.caFile}" } }]
users: [{ name: approval-service, user: { token: reviewer-token } }]
contexts: [{ name: c, context: { cluster: c, user: approval-service } }]
current-context: c
`);
    auth = new Authenticator({ sidecars: { issuer: 'https://kubernetes.default.svc', tokenReview: { kubeconfig } } }, await kubernetesTokenReviewer(kubeconfig));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a pod-bound token the API server authenticates, and takes the pod from its answer', async () => {
    expect(await auth.authenticate(`Bearer ${GOOD}`)).to.deep.equal({
      kind: 'sidecar',
      subject: 'system:serviceaccount:payments:agent',
      pod: { namespace: 'payments', name: 'agent-a-5f7d', uid: '11111111-aaaa-4aaa-8aaa-111111111111', serviceAccount: 'agent' },
    });
    const last = seen[seen.length - 1];
    expect(last.authorization).to.equal('Bearer reviewer-token');
    expect(last.body.spec).to.deep.equal({ token: GOOD, audiences: ['agentgate'] });
  });

  it('refuses a token the API server does not authenticate, with its error', async () => {
    const err = await auth.authenticate(`Bearer ${podToken('revoked')}`).then(() => undefined, (e: unknown) => e as ApprovalError);
    expect([err?.code, err?.message]).to.deep.equal(['unauthenticated', 'sidecar token rejected by TokenReview: [invalid bearer token, token lookup failed]']);
  });
});
