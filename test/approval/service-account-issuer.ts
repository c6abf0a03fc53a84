// A test stand-in for the cluster's service-account issuer (a double: it mints
// tokens in exactly the shape kube-apiserver's TokenRequest gives a projected
// volume — ES256/RS256 JWT, `iss`, `aud: [agentgate]`, `sub:
// system:serviceaccount:<ns>:<sa>`, and the `kubernetes.io` claim naming the
// namespace, pod and service account — and publishes its JWKS as a file, as an
// operator would save /openid/v1/jwks). Tests against the real API server's
// issuer live in test/e2e.

import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { PodIdentity } from '../../core/identity.js';

export interface ServiceAccountIssuer {
  issuer: string;
  jwksFile: string;
  /** A projected token for this pod (audience `agentgate` unless given). */
  token(pod: PodIdentity, opts?: { audience?: string; expiresInSeconds?: number; boundToPod?: boolean }): Promise<string>;
}

export async function createServiceAccountIssuer(dir: string, issuer = 'https://kubernetes.default.svc.cluster.local'): Promise<ServiceAccountIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = 'sa-key-1';
  const jwksFile = path.join(dir, 'sa-jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] }));
  return {
    issuer,
    jwksFile,
    async token(pod, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const k: Record<string, unknown> = { namespace: pod.namespace, serviceaccount: { name: pod.serviceAccount, uid: randomUUID() } };
      if (opts.boundToPod !== false) k.pod = { name: pod.name, uid: pod.uid };
      return new SignJWT({ 'kubernetes.io': k })
        .setProtectedHeader({ alg: 'RS256', kid })
        .setIssuer(issuer)
        .setAudience([opts.audience ?? 'agentgate'])
        .setSubject(`system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + (opts.expiresInSeconds ?? 3600))
        .sign(privateKey);
    },
  };
}
