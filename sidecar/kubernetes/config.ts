// The `kubernetes` block of the sidecar config: where the loopback API listener
// binds, where the agent's identity files go, the real API server, and the OIDC
// issuers whose JWTs an agent may present instead of the local token.
import type { Schema } from '../../core/yaml/validate.js';

export interface OidcIssuerConfig {
  issuer: string;
  audience: string | string[];
  /** Defaults to `<issuer>/.well-known/openid-configuration`'s `jwks_uri`. */
  jwksUri?: string;
  /** Asymmetric algorithms only; `none` and HMAC are never accepted. Default RS256, ES256, PS256, EdDSA. */
  algorithms?: string[];
  /** Claim naming the subject (default `sub`) and the groups (default `groups`). */
  subjectClaim?: string;
  groupsClaim?: string;
  /** Tolerated clock difference for exp/nbf/iat (default 60). */
  clockSkewSeconds?: number;
  /** CA bundle for the issuer's HTTPS (default: system roots). */
  caFile?: string;
  /**
   * Put before the subject claim and before every group, as kube-apiserver's
   * --oidc-username-prefix / --oidc-groups-prefix (default `<issuer>#` for both; `-` for none).
   * A `system:` name or group is refused whatever the prefix.
   */
  usernamePrefix?: string;
  groupsPrefix?: string;
}

export interface UpstreamConfig {
  /** `https://host:port`; default from the sidecar's KUBERNETES_SERVICE_HOST/PORT. */
  server?: string;
  /** Default $AGENTGATE_KUBERNETES_CA_FILE, else /var/run/secrets/agentgate/kube-api/ca.crt (the sidecar-only mount). */
  caFile?: string;
  /**
   * Default $AGENTGATE_KUBERNETES_TOKEN_FILE, else /var/run/secrets/agentgate/kube-api/token; re-read when it
   * changes. The injector sets the env var empty when the pod has no token: every request is then refused.
   */
  tokenFile?: string;
  /** Concurrent keep-alive connections to the API server (default 32). */
  connections?: number;
}

export interface KubernetesConfig {
  /** `host:port` of the HTTPS listener (default 127.0.0.1:15443). */
  listen: string;
  /** Where `token`, `ca.crt` and `namespace` are written for the agent. */
  identityDir: string;
  /** Local token rotation (default 600) and how long the previous token stays valid (default 120). */
  tokenRotationSeconds?: number;
  tokenGraceSeconds?: number;
  upstream?: UpstreamConfig;
  oidc?: OidcIssuerConfig[];
  /** Forward as the agent with Impersonate-User/-Group (the pod's service account must may impersonate). */
  impersonate?: boolean;
  /** Directory for exec/attach session recordings (default `<identityDir>/../sessions` → config `sessionDir`). */
  sessionDir?: string;
  /** audit.k8s.io level: Metadata, Request (default: request bodies of writes, masked) or RequestResponse (responses too, masked). */
  auditLevel?: 'Metadata' | 'Request' | 'RequestResponse';
  /** Name recorded as the audit event's `connection` (default `kubernetes`). */
  cluster?: string;
  /**
   * Retry-After (seconds) of the 429 a `mode: defer` approval answers while pending (default 5).
   * client-go retries such answers by itself up to 10 times, so this × 10 is how long an
   * unmodified client keeps asking before it reports the 429.
   */
  approvalRetryAfterSeconds?: number;
}

const hostPort: Schema = { kind: 'string', pattern: /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, patternHint: 'host:port, e.g. 127.0.0.1:15443' };

/** `system:` names are Kubernetes' own: no prefix may produce one. */
const oidcPrefix: Schema = { kind: 'string', nonEmpty: true, pattern: /^(?![sS][yY][sS][tT][eE][mM]:)\S+$/, patternHint: "a prefix such as 'oidc:' or '-' for none; never 'system:'" };

const oidcIssuerSchema: Schema = {
  kind: 'object',
  name: 'OIDC issuer',
  fields: {
    issuer: { schema: { kind: 'string', pattern: /^https:\/\/\S+$/, patternHint: 'an https:// URL' }, required: true },
    audience: { schema: { kind: 'any' }, required: true },
    jwksUri: { schema: { kind: 'string', pattern: /^https?:\/\/\S+$/, patternHint: 'an http(s):// URL' } },
    algorithms: {
      schema: {
        kind: 'array',
        minItems: 1,
        items: { kind: 'string', enum: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] },
      },
    },
    subjectClaim: { schema: { kind: 'string', nonEmpty: true } },
    groupsClaim: { schema: { kind: 'string', nonEmpty: true } },
    clockSkewSeconds: { schema: { kind: 'number', min: 0, max: 600 } },
    caFile: { schema: { kind: 'string', nonEmpty: true } },
    usernamePrefix: { schema: oidcPrefix },
    groupsPrefix: { schema: oidcPrefix },
  },
};

export const kubernetesConfigSchema: Schema = {
  kind: 'object',
  name: 'kubernetes',
  fields: {
    listen: { schema: hostPort },
    identityDir: { schema: { kind: 'string', nonEmpty: true } },
    tokenRotationSeconds: { schema: { kind: 'number', integer: true, min: 10, max: 86400 } },
    tokenGraceSeconds: { schema: { kind: 'number', integer: true, min: 0, max: 86400 } },
    upstream: {
      schema: {
        kind: 'object',
        name: 'upstream',
        fields: {
          server: { schema: { kind: 'string', pattern: /^https?:\/\/\S+$/, patternHint: 'a URL such as https://10.0.0.1:443' } },
          caFile: { schema: { kind: 'string', nonEmpty: true } },
          tokenFile: { schema: { kind: 'string', nonEmpty: true } },
          connections: { schema: { kind: 'number', integer: true, min: 1, max: 1024 } },
        },
      },
    },
    oidc: { schema: { kind: 'array', items: oidcIssuerSchema } },
    impersonate: { schema: { kind: 'boolean' } },
    sessionDir: { schema: { kind: 'string', nonEmpty: true } },
    auditLevel: { schema: { kind: 'string', enum: ['Metadata', 'Request', 'RequestResponse'] } },
    cluster: { schema: { kind: 'string', nonEmpty: true } },
    approvalRetryAfterSeconds: { schema: { kind: 'number', integer: true, min: 1, max: 600 } },
  },
};

export const DEFAULT_LISTEN = '127.0.0.1:15443';
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** Where the injector mounts the pod's real service-account token for the sidecar alone. */
export const KUBE_API_DIR = '/var/run/secrets/agentgate/kube-api';

/** Fills defaults (from the env the injector sets where there is one); the loader validated the shape. */
export function withDefaults(raw: Partial<KubernetesConfig> | undefined, env: NodeJS.ProcessEnv = process.env): KubernetesConfig {
  const c = raw ?? {};
  return {
    ...c,
    listen: c.listen ?? DEFAULT_LISTEN,
    identityDir: c.identityDir ?? (env.AGENTGATE_IDENTITY_DIR || SERVICE_ACCOUNT_DIR),
    tokenRotationSeconds: c.tokenRotationSeconds ?? 600,
    tokenGraceSeconds: c.tokenGraceSeconds ?? 120,
    auditLevel: c.auditLevel ?? 'Request',
    cluster: c.cluster ?? 'kubernetes',
    impersonate: c.impersonate ?? false,
  };
}
