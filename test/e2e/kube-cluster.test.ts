// The control plane the e2e suites run on: the REAL kube-apiserver and kube-controller-manager
// v1.20.2 (Debian's kubernetes source, built by test/support/build-kube.sh) on a real etcd.
// These specs pin down the properties the injector and proxy suites rely on.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import * as k8s from '@kubernetes/client-node';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { Agent, request } from 'undici';
import { sharedKubeCluster, stopSharedKubeCluster, type KubeCluster } from '../support/kube-cluster.js';

const exec = promisify(execFile);
const KUBECTL_OLDEST = '/usr/lib/google-cloud-sdk/bin/kubectl.1.27';
const KUBECTL_NEWEST = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';

after(stopSharedKubeCluster);

describe('e2e control plane: the real kube-apiserver v1.20.2 on etcd', function () {
  let cluster: KubeCluster;
  let core: k8s.CoreV1Api;
  // kubectl's discovery cache goes to the cluster's temp dir, not the user's ~/.kube.
  const kubectlEnv = () => ({ env: { ...process.env, KUBECACHEDIR: path.join(cluster.dir, 'kubecache') } });

  before(async function () {
    // The first run on a machine builds the binaries (minutes); later runs start in seconds.
    this.timeout(60 * 60_000);
    cluster = await sharedKubeCluster();
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
  });

  it('reports version v1.20.2', function () {
    expect(cluster.version).to.equal('v1.20.2');
  });

  it('answers kubectl 1.27 and 1.33 with the admin kubeconfig', async function () {
    for (const kubectl of [KUBECTL_OLDEST, KUBECTL_NEWEST]) {
      const { stdout } = await exec(kubectl, ['--kubeconfig', cluster.kubeconfigPath, 'get', 'namespace', 'default', '-o', 'jsonpath={.metadata.name}'], kubectlEnv());
      expect(stdout).to.equal('default');
    }
  });

  it('issues service-account tokens through TokenRequest (kubectl create token) with the configured issuer and audience', async function () {
    const { stdout } = await exec(KUBECTL_NEWEST, ['--kubeconfig', cluster.kubeconfigPath, '-n', 'default', 'create', 'token', 'default', '--audience', 'agentgate'], kubectlEnv());
    const claims = decodeJwt(stdout.trim());
    expect(claims.iss).to.equal(cluster.issuer);
    expect(claims.aud).to.deep.equal(['agentgate']);
    expect(claims.sub).to.equal('system:serviceaccount:default:default');
  });

  it('serves the OIDC discovery document and the JWKS of the service-account issuer', async function () {
    const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
    try {
      const headers = { authorization: `Bearer ${cluster.adminToken}` };
      const disc = await request(`${cluster.server}/.well-known/openid-configuration`, { dispatcher, headers });
      const doc = (await disc.body.json()) as { issuer: string; jwks_uri: string };
      expect(doc.issuer).to.equal(cluster.issuer);
      const jwks = await request(`${cluster.server}/openid/v1/jwks`, { dispatcher, headers });
      const keys = ((await jwks.body.json()) as { keys: Array<{ kty: string; alg: string }> }).keys;
      expect(keys.map((k) => [k.kty, k.alg])).to.deep.equal([['RSA', 'RS256']]);
    } finally {
      await dispatcher.close();
    }
  });

  it('signs TokenRequest tokens of audience agentgate that verify against the issuer\'s JWKS (as the approval service will)', async function () {
    const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
    try {
      const res = await request(`${cluster.server}/openid/v1/jwks`, { dispatcher, headers: { authorization: `Bearer ${cluster.adminToken}` } });
      const jwks = createLocalJWKSet((await res.body.json()) as JSONWebKeySet);
      const token = await cluster.requestToken('default', 'default', { audiences: ['agentgate'], expirationSeconds: 600 });
      const { payload } = await jwtVerify(token, jwks, { issuer: cluster.issuer, audience: 'agentgate', algorithms: ['RS256'] });
      expect(payload.sub).to.equal('system:serviceaccount:default:default');
      let wrongAudience: unknown;
      await jwtVerify(token, jwks, { issuer: cluster.issuer, audience: 'someone-else' }).catch((e: unknown) => (wrongAudience = e));
      expect((wrongAudience as { code?: string }).code).to.equal('ERR_JWT_CLAIM_VALIDATION_FAILED');
    } finally {
      await dispatcher.close();
    }
  });

  it('gives a new pod the projected kube-api-access volume (BoundServiceAccountTokenVolume) mounted at the service-account path', async function () {
    const pod = await core.createNamespacedPod({
      namespace: 'default',
      body: { metadata: { name: 'projected-probe' }, spec: { containers: [{ name: 'app', image: 'busybox' }] } },
    });
    const vol = pod.spec!.volumes!.find((v) => v.name.startsWith('kube-api-access-'));
    expect(vol?.projected?.sources?.map((s) => Object.keys(s).filter((k) => (s as Record<string, unknown>)[k] !== undefined)[0])).to.deep.equal(['serviceAccountToken', 'configMap', 'downwardAPI']);
    expect(pod.spec!.containers[0]!.volumeMounts).to.deep.equal([
      { name: vol!.name, readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' },
    ]);
    expect(pod.status?.phase).to.equal('Pending');
    await core.deleteNamespacedPod({ name: 'projected-probe', namespace: 'default', gracePeriodSeconds: 0 });
  });

  it('runs the controller manager: a new namespace gets its default ServiceAccount and kube-root-ca.crt', async function () {
    this.timeout(90_000);
    await cluster.createNamespace('e2e-cluster-ns');
    const cm = await core.readNamespacedConfigMap({ name: 'kube-root-ca.crt', namespace: 'e2e-cluster-ns' });
    expect(cm.data?.['ca.crt']).to.equal(cluster.caPem);
  });

  it('enforces RBAC: a service account without bindings is refused with a Forbidden Status', async function () {
    const token = await cluster.requestToken('default', 'default');
    const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
    try {
      const res = await request(`${cluster.server}/api/v1/namespaces/default/secrets`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
      const status = (await res.body.json()) as { kind: string; reason: string; code: number; message: string };
      expect(res.statusCode).to.equal(403);
      expect(status).to.include({ kind: 'Status', reason: 'Forbidden', code: 403 });
      expect(status.message).to.equal('secrets is forbidden: User "system:serviceaccount:default:default" cannot list resource "secrets" in API group "" in the namespace "default"');
    } finally {
      await dispatcher.close();
    }
  });
});
