// Who is calling: the local token (the pod's own service account) or a JWT from a
// configured OIDC issuer. Anything else is refused with 401 before it is classified.
// JWT rules: only asymmetric algorithms from the issuer's allow-list (so `alg: none`
// and HMAC signed with the public key as secret never verify), iss/aud/exp/nbf
// checked with a bounded skew, keys from the issuer's JWKS (cached, refetched when
// an unknown `kid` appears, which is how issuers rotate keys).
// OIDC names are namespaced as kube-apiserver's --oidc-username-prefix and
// --oidc-groups-prefix do: by default `<issuer>#` before the username and every group
// (a per-issuer prefix may replace it), so no issuer can name a service account or a
// group another issuer or Kubernetes itself hands out. A `system:` name or group is
// refused outright, whatever the prefix: those belong to Kubernetes.

import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify, errors as joseErrors } from 'jose';
import type { FetchImplementation, JWTPayload, JWTVerifyGetKey } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Dispatcher } from 'undici';
import { readFileSync } from 'node:fs';
import type { Identity, PodIdentity } from '../../core/identity.js';
import { serviceAccountGroups, serviceAccountSubject } from '../../core/identity.js';
import type { OidcIssuerConfig } from './config.js';
import type { LocalTokens } from './identity-files.js';

export const DEFAULT_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const ASYMMETRIC = /^(RS|PS|ES)(256|384|512)$|^EdDSA$/;

export class AuthenticationError extends Error {}

interface Issuer {
  cfg: OidcIssuerConfig;
  usernamePrefix: string;
  groupsPrefix: string;
  audiences: string[];
  algorithms: string[];
  jwks: JWTVerifyGetKey | undefined;
  jwksPromise?: Promise<JWTVerifyGetKey>;
}

export class Authenticator {
  private readonly issuers = new Map<string, Issuer>();
  private local: Identity | undefined;

  constructor(
    private readonly tokens: LocalTokens,
    private readonly pod: PodIdentity | undefined,
    oidc: OidcIssuerConfig[] = [],
  ) {
    for (const cfg of oidc) {
      const algorithms = (cfg.algorithms ?? DEFAULT_ALGORITHMS).filter((a) => ASYMMETRIC.test(a));
      const audiences = Array.isArray(cfg.audience) ? cfg.audience.map(String) : [String(cfg.audience)];
      this.issuers.set(cfg.issuer, {
        cfg,
        audiences,
        algorithms,
        jwks: undefined,
        usernamePrefix: prefixOf(cfg.usernamePrefix, cfg.issuer),
        groupsPrefix: prefixOf(cfg.groupsPrefix, cfg.issuer),
      });
    }
  }

  /** Resolves the identity or throws AuthenticationError with a message safe to show the client. */
  async authenticate(authorization: string | undefined): Promise<Identity> {
    if (!authorization) throw new AuthenticationError('no bearer token: use the token agentgate wrote to the service-account directory');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) throw new AuthenticationError('only bearer tokens are accepted');
    const token = m[1]!;
    if (this.tokens.accepts(token)) {
      if (!this.pod) throw new AuthenticationError('the sidecar has no pod identity (AGENTGATE_POD_NAMESPACE/AGENTGATE_SERVICE_ACCOUNT unset)');
      // One frozen object for every request on the local token: it never changes for a pod.
      this.local ??= Object.freeze({
        subject: serviceAccountSubject(this.pod.namespace, this.pod.serviceAccount),
        groups: Object.freeze(serviceAccountGroups(this.pod.namespace)) as string[],
        via: 'local-token' as const,
        pod: this.pod,
      });
      return this.local;
    }
    if (token.split('.').length === 3 && this.issuers.size > 0) return this.verifyJwt(token);
    throw new AuthenticationError('invalid bearer token: it is neither the current agentgate token nor a JWT from a configured issuer');
  }

  private async verifyJwt(token: string): Promise<Identity> {
    let iss: string | undefined;
    try {
      const header = decodeProtectedHeader(token);
      if (typeof header.alg !== 'string' || !ASYMMETRIC.test(header.alg)) {
        throw new AuthenticationError(`JWT algorithm '${String(header.alg)}' is not accepted (asymmetric signatures only)`);
      }
      const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as JWTPayload;
      iss = payload.iss;
    } catch (err) {
      if (err instanceof AuthenticationError) throw err;
      throw new AuthenticationError('malformed JWT');
    }
    const issuer = iss ? this.issuers.get(iss) : undefined;
    if (!issuer) throw new AuthenticationError(`JWT issuer '${iss ?? ''}' is not configured`);
    const keys = await this.keysOf(issuer);
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: issuer.cfg.issuer,
        audience: issuer.audiences,
        algorithms: issuer.algorithms,
        clockTolerance: issuer.cfg.clockSkewSeconds ?? 60,
        requiredClaims: ['exp'],
      });
      const subjectClaim = issuer.cfg.subjectClaim ?? 'sub';
      const subject = payload[subjectClaim];
      if (typeof subject !== 'string' || subject === '') throw new AuthenticationError(`JWT has no '${subjectClaim}' claim`);
      const rawGroups = payload[issuer.cfg.groupsClaim ?? 'groups'];
      const groups = Array.isArray(rawGroups) ? rawGroups.filter((g): g is string => typeof g === 'string').map((g) => issuer.groupsPrefix + g) : [];
      const username = issuer.usernamePrefix + subject;
      if (isSystemName(username)) throw new AuthenticationError(`JWT subject '${username}' is refused: names starting with 'system:' belong to Kubernetes, not to an OIDC issuer`);
      const reserved = groups.find(isSystemName);
      if (reserved !== undefined) throw new AuthenticationError(`JWT group '${reserved}' is refused: groups starting with 'system:' belong to Kubernetes, not to an OIDC issuer`);
      return { subject: username, groups: [...groups, 'system:authenticated'], via: 'oidc', issuer: issuer.cfg.issuer, ...(this.pod ? { pod: this.pod } : {}) };
    } catch (err) {
      if (err instanceof AuthenticationError) throw err;
      throw new AuthenticationError(`JWT rejected: ${describeJoseError(err)}`);
    }
  }

  private async keysOf(issuer: Issuer): Promise<JWTVerifyGetKey> {
    if (issuer.jwks) return issuer.jwks;
    issuer.jwksPromise ??= (async () => {
      const fetchOpts = issuer.cfg.caFile
        ? { dispatcher: new Agent({ connect: { ca: readFileSync(issuer.cfg.caFile, 'utf8') } }) }
        : undefined;
      let uri = issuer.cfg.jwksUri;
      if (!uri) {
        const res = await fetchWith(`${issuer.cfg.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, fetchOpts);
        const doc = (await res.json()) as { jwks_uri?: string };
        if (!doc.jwks_uri) throw new AuthenticationError(`issuer ${issuer.cfg.issuer} publishes no jwks_uri`);
        uri = doc.jwks_uri;
      }
      // jose caches the key set, refetches on an unknown kid (at most every 30 s)
      // and at the latest after 10 minutes.
      return createRemoteJWKSet(new URL(uri), {
        cooldownDuration: 30_000,
        cacheMaxAge: 600_000,
        ...(fetchOpts ? { [customFetch]: ((u: string, o: { headers?: unknown; signal?: AbortSignal }) => fetchWith(u, fetchOpts, o)) as unknown as FetchImplementation } : {}),
      });
    })().then(
      (k) => (issuer.jwks = k),
      (err) => {
        issuer.jwksPromise = undefined;
        throw err instanceof AuthenticationError ? err : new AuthenticationError(`cannot fetch the keys of issuer ${issuer.cfg.issuer}: ${(err as Error).message}`);
      },
    );
    return issuer.jwksPromise;
  }
}

/** A configured prefix; `-` for none, as kube-apiserver spells it; default `<issuer>#`. */
function prefixOf(configured: string | undefined, issuer: string): string {
  if (configured === undefined) return `${issuer}#`;
  return configured === '-' ? '' : configured;
}

function isSystemName(name: string): boolean {
  return name.toLowerCase().startsWith('system:');
}

async function fetchWith(url: string, opts: { dispatcher?: Dispatcher } | undefined, init: { headers?: unknown; signal?: AbortSignal } = {}) {
  const res = await undiciFetch(url, {
    ...(opts?.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    headers: init.headers as Record<string, string> | undefined,
    signal: init.signal ?? AbortSignal.timeout(5000),
  });
  if (!res.ok && init.signal === undefined) throw new Error(`${url}: HTTP ${res.status}`);
  return res;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim '${err.claim}' ${err.reason === 'check_failed' ? 'check failed' : err.reason}: ${err.message}`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the issuer matches the token';
  if (err instanceof joseErrors.JWKSTimeout) return 'the issuer key set did not answer in time';
  if (err instanceof joseErrors.JOSEError) return err.message;
  return (err as Error).message ?? String(err);
}
