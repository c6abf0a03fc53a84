// Who is calling: approvers with an OIDC JWT (issuer, audience, JWKS through jose),
// sidecars with their pod-bound projected service-account token (audience
// `agentgate`), verified against the cluster's service-account issuer JWKS or,
// when configured, by the API server itself through TokenReview. A token is routed
// to a verifier by its (unverified) issuer and the `kubernetes.io` claim; only the
// verifier's answer is trusted.

import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { ApprovalError } from './types.js';
import type { ApproverPrincipal, Principal, SidecarPrincipal } from './service.js';
import { serviceAccountSubject } from '../core/identity.js';

export interface ApproverAuthConfig {
  issuer: string;
  audience: string;
  /** Default: the `jwks_uri` of the issuer's OpenID discovery document. */
  jwksUri?: string;
  /** Claim naming the approver (default `sub`; `email` or `preferred_username` read better in audit). */
  usernameClaim?: string;
  /** Claim holding the approver's groups (default `groups`). */
  groupsClaim?: string;
}

export interface SidecarAuthConfig {
  /** The cluster's service-account issuer (`--service-account-issuer`). */
  issuer: string;
  /** Default `agentgate`. */
  audience?: string;
  jwksUri?: string;
  /** A JWKS document on disk (e.g. fetched from the API server's /openid/v1/jwks). */
  jwksFile?: string;
  /** Verify through the API server's TokenReview instead (in-cluster config, or this kubeconfig). */
  tokenReview?: { kubeconfig?: string };
}

export interface AuthConfig {
  approvers?: ApproverAuthConfig;
  sidecars?: SidecarAuthConfig;
  clockToleranceSeconds?: number;
}

/** What TokenReview answers, reduced to what we use (so tests and the real API fit one seam). */
export interface TokenReviewer {
  review(token: string, audiences: string[]): Promise<{ authenticated: boolean; username?: string; extra?: Record<string, string[]>; error?: string }>;
}

const unauth = (m: string) => new ApprovalError('unauthenticated', m);

export class Authenticator {
  private approverKeys?: Promise<JWTVerifyGetKey>;
  private sidecarKeys?: JWTVerifyGetKey;
  private reviewer?: TokenReviewer;
  private readonly reviewCache = new Map<string, { at: number; p: SidecarPrincipal }>();

  constructor(private readonly cfg: AuthConfig, reviewer?: TokenReviewer) {
    const s = cfg.sidecars;
    if (s?.jwksFile) this.sidecarKeys = createLocalJWKSet(JSON.parse(readFileSync(s.jwksFile, 'utf8')));
    else if (s?.jwksUri) this.sidecarKeys = createRemoteJWKSet(new URL(s.jwksUri));
    this.reviewer = reviewer;
  }

  /** Verifies the bearer token of a request; throws ApprovalError('unauthenticated') with the reason. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) throw unauth('a bearer token is required (Authorization: Bearer <token>)');
    const token = m[1];
    let claims: JWTPayload;
    try {
      claims = decodeJwt(token);
    } catch {
      throw unauth('the bearer token is not a JWT');
    }
    // Projected service-account tokens always carry the `kubernetes.io` claim; OIDC tokens never do.
    if (typeof claims['kubernetes.io'] === 'object' && claims['kubernetes.io'] !== null) {
      if (!this.cfg.sidecars) throw unauth('sidecar authentication is not configured on this service');
      return this.sidecar(token, this.cfg.sidecars);
    }
    const a = this.cfg.approvers;
    if (a && claims.iss === a.issuer) return this.approver(token, a);
    throw unauth(`tokens from issuer ${JSON.stringify(claims.iss ?? '')} are not accepted here`);
  }

  private async approver(token: string, a: ApproverAuthConfig): Promise<ApproverPrincipal> {
    this.approverKeys ??= discoverKeys(a).catch((err) => {
      this.approverKeys = undefined; // retry discovery on the next request
      throw err;
    });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.approverKeys, {
        issuer: a.issuer,
        audience: a.audience,
        clockTolerance: this.cfg.clockToleranceSeconds ?? 30,
      }));
    } catch (err) {
      throw unauth(`approver token rejected: ${(err as Error).message}`);
    }
    const subject = payload[a.usernameClaim ?? 'sub'];
    if (typeof subject !== 'string' || !subject) throw unauth(`approver token has no ${a.usernameClaim ?? 'sub'} claim`);
    const raw = payload[a.groupsClaim ?? 'groups'];
    const groups = Array.isArray(raw) ? raw.filter((g): g is string => typeof g === 'string') : typeof raw === 'string' ? raw.split(/[\s,]+/).filter(Boolean) : [];
    return { kind: 'approver', subject, groups, issuer: a.issuer };
  }

  private async sidecar(token: string, s: SidecarAuthConfig): Promise<SidecarPrincipal> {
    const audience = s.audience ?? 'agentgate';
    if (this.sidecarKeys) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, this.sidecarKeys, { issuer: s.issuer, audience, clockTolerance: this.cfg.clockToleranceSeconds ?? 30 }));
      } catch (err) {
        throw unauth(`sidecar token rejected: ${(err as Error).message}`);
      }
      return podPrincipal(payload);
    }
    if (!this.reviewer) throw unauth('sidecar authentication is not configured (sidecars.jwksUri, jwksFile or tokenReview)');
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.reviewCache.get(key);
    if (hit && Date.now() - hit.at < 10_000) return hit.p;
    let res;
    try {
      res = await this.reviewer.review(token, [audience]);
    } catch (err) {
      throw new ApprovalError('unavailable', `TokenReview failed, so the sidecar cannot be authenticated: ${(err as Error).message}`);
    }
    if (!res.authenticated) throw unauth(`sidecar token rejected by TokenReview${res.error ? `: ${res.error}` : ''}`);
    const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(res.username ?? '');
    const podName = res.extra?.['authentication.kubernetes.io/pod-name']?.[0];
    const podUid = res.extra?.['authentication.kubernetes.io/pod-uid']?.[0];
    if (!sa || !podName || !podUid) throw unauth('sidecar token is not a pod-bound service-account token (no pod in TokenReview)');
    const p: SidecarPrincipal = { kind: 'sidecar', subject: res.username!, pod: { namespace: sa[1], name: podName, uid: podUid, serviceAccount: sa[2] } };
    if (this.reviewCache.size > 10_000) this.reviewCache.clear();
    this.reviewCache.set(key, { at: Date.now(), p });
    return p;
  }
}

/** The pod a projected service-account token is bound to (its `kubernetes.io` claim). */
function podPrincipal(payload: JWTPayload): SidecarPrincipal {
  const k = payload['kubernetes.io'] as { namespace?: string; pod?: { name?: string; uid?: string }; serviceaccount?: { name?: string } } | undefined;
  const ns = k?.namespace;
  const sa = k?.serviceaccount?.name;
  const pod = k?.pod;
  if (!ns || !sa) throw unauth('sidecar token has no kubernetes.io namespace/serviceaccount claims');
  if (!pod?.name || !pod.uid) throw unauth('sidecar token is not bound to a pod (a projected service-account token is required)');
  const subject = serviceAccountSubject(ns, sa);
  if (payload.sub !== subject) throw unauth(`sidecar token subject ${payload.sub} does not match its kubernetes.io claims`);
  return { kind: 'sidecar', subject, pod: { namespace: ns, name: pod.name, uid: pod.uid, serviceAccount: sa } };
}

async function discoverKeys(a: ApproverAuthConfig): Promise<JWTVerifyGetKey> {
  if (a.jwksUri) return createRemoteJWKSet(new URL(a.jwksUri));
  const url = `${a.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let doc: { jwks_uri?: string };
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    doc = (await res.json()) as { jwks_uri?: string };
  } catch (err) {
    throw new ApprovalError('unavailable', `cannot read the approvers' OpenID configuration at ${url}: ${(err as Error).message}`);
  }
  if (!doc.jwks_uri) throw new ApprovalError('unavailable', `${url} names no jwks_uri`);
  return createRemoteJWKSet(new URL(doc.jwks_uri));
}

/** TokenReview through @kubernetes/client-node (in-cluster config, or a kubeconfig file). */
export async function kubernetesTokenReviewer(kubeconfig?: string): Promise<TokenReviewer> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromCluster();
  const api = kc.makeApiClient(k8s.AuthenticationV1Api);
  return {
    async review(token, audiences) {
      const res = await api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
      const st = res.status ?? {};
      return { authenticated: st.authenticated === true, username: st.user?.username, extra: st.user?.extra, error: st.error };
    },
  };
}
