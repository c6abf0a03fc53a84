// The sidecar configuration file (`agentgate sidecar --config FILE`): PostgreSQL
// connections, the Kubernetes proxy block, policy, audit, health and metrics.
// Validated through core/yaml so every mistake is reported with file:line:col.
// Relative paths are resolved against the config file's directory.

import fs from 'node:fs';
import path from 'node:path';
import { loadYamlDocuments, formatSourceError, formatPath } from '../core/yaml/validate.js';
import type { Schema, SourceError } from '../core/yaml/validate.js';
import { kubernetesConfigSchema } from './kubernetes/config.js';
import type { KubernetesConfig } from './kubernetes/config.js';

export type TlsMode = 'disable' | 'require' | 'verify-full';

export interface PostgresConnectionConfig {
  name: string;
  /** host:port of the loopback listener; default 127.0.0.1:15432 + index. */
  listen: { host: string; port: number };
  upstream: {
    host: string;
    port: number;
    database: string;
    user: string;
    /** Absolute path; read at each new upstream connection when it changed. */
    passwordFile?: string;
    tls: { mode: TlsMode; caFile?: string; serverName?: string };
    connectTimeoutSeconds: number;
  };
  /** `trust`: any loopback client is the pod; `token`: the password must be the agent token or an OIDC JWT. */
  clientAuth: { mode: 'trust' | 'token'; tokenFile?: string; tokenGraceSeconds: number };
  /**
   * TLS towards the agent, with the sidecar's loopback CA (the `ca.crt` of the kubernetes
   * block's identityDir): `offer` (default) answers an SSLRequest with TLS, `require`
   * refuses clients that do not ask for it, `disable` answers every SSLRequest 'N'.
   */
  clientTls: { mode: ClientTlsMode };
  maxMessageBytes: number;
}

export type ClientTlsMode = 'offer' | 'require' | 'disable';

/** Where `action: approve` rules get their human decision. */
export interface ApprovalServiceConfig {
  /** Base URL of the approval service (http or https). */
  url: string;
  /** The sidecar's projected service-account token, audience `agentgate`; re-read on every call. */
  tokenFile: string;
  /** CA bundle for an https URL signed by a private CA (trusted for that origin only). */
  caFile?: string;
  /** Longest wait for one non-waiting call (create, use, cancel) before failing closed. */
  timeoutSeconds: number;
  /** Longest single long-poll while a statement is held. */
  pollSeconds: number;
}

/** Where the kubelet mounts the sidecar's projected token of audience `agentgate` (injector). */
export const APPROVAL_TOKEN_FILE = '/var/run/secrets/agentgate/approval/token';

export interface SidecarConfig {
  file: string;
  postgres: PostgresConnectionConfig[];
  approval?: ApprovalServiceConfig;
  kubernetes?: KubernetesConfig;
  policy: { file: string };
  audit: { file: string; signingKeyFile?: string };
  health: { host: string; port: number };
  metrics: { host: string; port: number };
  drainSeconds: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly errors: SourceError[]) {
    super(errors.map(formatSourceError).join('\n'));
  }
}

const hostPort: Schema = { kind: 'string', pattern: /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, patternHint: 'host:port, e.g. 127.0.0.1:15432' };
const nonEmpty: Schema = { kind: 'string', nonEmpty: true };
const port: Schema = { kind: 'number', integer: true, min: 1, max: 65535 };

const postgresSchema: Schema = {
  kind: 'object',
  name: 'postgres connection',
  fields: {
    name: { schema: { kind: 'string', pattern: /^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$/, patternHint: 'lower-case letters, digits, - and _' }, required: true },
    listen: { schema: hostPort },
    upstream: {
      required: true,
      schema: {
        kind: 'object',
        fields: {
          host: { schema: nonEmpty, required: true },
          port: { schema: port },
          database: { schema: nonEmpty, required: true },
          user: { schema: nonEmpty, required: true },
          passwordFile: { schema: nonEmpty },
          tls: {
            schema: {
              kind: 'object',
              fields: {
                mode: { schema: { kind: 'string', enum: ['disable', 'require', 'verify-full'] }, required: true },
                caFile: { schema: nonEmpty },
                serverName: { schema: nonEmpty },
              },
            },
          },
          connectTimeoutSeconds: { schema: { kind: 'number', min: 0.1, max: 300 } },
        },
      },
    },
    clientAuth: {
      schema: {
        kind: 'object',
        fields: {
          mode: { schema: { kind: 'string', enum: ['trust', 'token'] }, required: true },
          tokenFile: { schema: nonEmpty },
          tokenGraceSeconds: { schema: { kind: 'number', min: 0, max: 86400 } },
        },
      },
    },
    clientTls: {
      schema: { kind: 'object', fields: { mode: { schema: { kind: 'string', enum: ['offer', 'require', 'disable'] }, required: true } } },
    },
    maxMessageBytes: { schema: { kind: 'number', integer: true, min: 1024, max: 1073741824 } },
  },
};

export const sidecarConfigSchema: Schema = {
  kind: 'object',
  name: 'sidecar config',
  fields: {
    postgres: { schema: { kind: 'array', items: postgresSchema } },
    kubernetes: { schema: kubernetesConfigSchema },
    approval: {
      schema: {
        kind: 'object',
        name: 'approval service',
        fields: {
          url: { schema: { kind: 'string', pattern: /^https?:\/\/[^\s/]+(\/\S*)?$/, patternHint: 'http(s)://host:port' }, required: true },
          tokenFile: { schema: nonEmpty },
          caFile: { schema: nonEmpty },
          timeoutSeconds: { schema: { kind: 'number', min: 0.1, max: 300 } },
          pollSeconds: { schema: { kind: 'number', min: 1, max: 300 } },
        },
      },
    },
    policy: { required: true, schema: { kind: 'object', fields: { file: { schema: nonEmpty, required: true } } } },
    audit: {
      required: true,
      schema: { kind: 'object', fields: { file: { schema: nonEmpty, required: true }, signingKeyFile: { schema: nonEmpty } } },
    },
    health: { schema: { kind: 'object', fields: { listen: { schema: hostPort } } } },
    metrics: { schema: { kind: 'object', fields: { listen: { schema: hostPort } } } },
    drainSeconds: { schema: { kind: 'number', min: 0, max: 3600 } },
  },
};

interface RawConfig {
  postgres?: Array<{
    name: string;
    listen?: string;
    upstream: {
      host: string;
      port?: number;
      database: string;
      user: string;
      passwordFile?: string;
      tls?: { mode: TlsMode; caFile?: string; serverName?: string };
      connectTimeoutSeconds?: number;
    };
    clientAuth?: { mode: 'trust' | 'token'; tokenFile?: string; tokenGraceSeconds?: number };
    clientTls?: { mode: ClientTlsMode };
    maxMessageBytes?: number;
  }>;
  kubernetes?: KubernetesConfig;
  approval?: { url: string; tokenFile?: string; caFile?: string; timeoutSeconds?: number; pollSeconds?: number };
  policy: { file: string };
  audit: { file: string; signingKeyFile?: string };
  health?: { listen?: string };
  metrics?: { listen?: string };
  drainSeconds?: number;
}

export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

export function loadSidecarConfig(file: string): SidecarConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, message: `cannot read config: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parseSidecarConfig(text, file);
}

export function parseSidecarConfig(text: string, file: string): SidecarConfig {
  const docs = loadYamlDocuments<RawConfig>(text, file, sidecarConfigSchema);
  if (docs.length !== 1) throw new ConfigError([{ file, line: 1, col: 1, message: docs.length === 0 ? 'the config is empty' : 'the config must be a single YAML document' }]);
  const doc = docs[0];
  if (doc.errors.length) throw new ConfigError(doc.errors);
  const raw = doc.value;
  const errors: SourceError[] = [];
  const at = (p: (string | number)[], message: string) => errors.push({ file, ...doc.positionOf(p), message: p.length ? `${formatPath(p)}: ${message}` : message });
  const base = path.dirname(path.resolve(file));
  const abs = (p: string | undefined) => (p === undefined || p === '-' ? p : path.resolve(base, p));

  const names = new Set<string>();
  const ports = new Map<number, string>();
  const postgres: PostgresConnectionConfig[] = (raw.postgres ?? []).map((c, i) => {
    if (names.has(c.name)) at(['postgres', i, 'name'], `duplicate connection name '${c.name}'`);
    names.add(c.name);
    const listen = c.listen ? splitHostPort(c.listen) : { host: '127.0.0.1', port: 15432 + i };
    if (listen.port < 0 || listen.port > 65535) at(['postgres', i, 'listen'], `invalid port ${listen.port}`);
    if (listen.port !== 0 && ports.has(listen.port)) at(['postgres', i, 'listen'], `port ${listen.port} is already used by connection '${ports.get(listen.port)}'`);
    ports.set(listen.port, c.name);
    const tls = c.upstream.tls ?? { mode: 'disable' as const };
    if (tls.mode === 'verify-full' && !tls.caFile) at(['postgres', i, 'upstream', 'tls'], 'verify-full needs caFile (the CA that signed the server certificate)');
    if (tls.mode !== 'verify-full' && tls.caFile) at(['postgres', i, 'upstream', 'tls', 'caFile'], `caFile is only used with mode verify-full (mode is ${tls.mode})`);
    const auth = c.clientAuth ?? { mode: 'trust' as const };
    if (auth.mode === 'token' && !auth.tokenFile && !raw.kubernetes?.identityDir) {
      at(['postgres', i, 'clientAuth'], 'token mode needs tokenFile, or a kubernetes block whose identityDir holds the agent token');
    }
    return {
      name: c.name,
      listen,
      upstream: {
        host: c.upstream.host,
        port: c.upstream.port ?? 5432,
        database: c.upstream.database,
        user: c.upstream.user,
        passwordFile: abs(c.upstream.passwordFile),
        tls: { mode: tls.mode, caFile: abs(tls.caFile), serverName: tls.serverName },
        connectTimeoutSeconds: c.upstream.connectTimeoutSeconds ?? 10,
      },
      clientAuth: {
        mode: auth.mode,
        tokenFile: abs(auth.tokenFile) ?? (raw.kubernetes?.identityDir ? path.join(abs(raw.kubernetes.identityDir)!, 'token') : undefined),
        tokenGraceSeconds: c.clientAuth?.tokenGraceSeconds ?? 120,
      },
      clientTls: { mode: c.clientTls?.mode ?? 'offer' },
      maxMessageBytes: c.maxMessageBytes ?? 64 * 1024 * 1024,
    };
  });
  if (postgres.length === 0 && !raw.kubernetes) at([], 'nothing to proxy: configure at least one postgres connection or the kubernetes block');
  const a = raw.approval;
  if (a?.caFile && a.url.startsWith('http:')) at(['approval', 'caFile'], 'caFile is only used with an https url');
  if (errors.length) throw new ConfigError(errors);
  return {
    file,
    postgres,
    kubernetes: raw.kubernetes && resolveKubernetesPaths(raw.kubernetes, abs),
    approval: a
      ? {
          url: a.url,
          tokenFile: abs(a.tokenFile) ?? APPROVAL_TOKEN_FILE,
          caFile: abs(a.caFile),
          timeoutSeconds: a.timeoutSeconds ?? 5,
          pollSeconds: a.pollSeconds ?? 30,
        }
      : undefined,
    policy: { file: abs(raw.policy.file)! },
    audit: { file: abs(raw.audit.file)!, signingKeyFile: abs(raw.audit.signingKeyFile) },
    health: splitHostPort(raw.health?.listen ?? '0.0.0.0:15021'),
    metrics: splitHostPort(raw.metrics?.listen ?? '0.0.0.0:15090'),
    drainSeconds: raw.drainSeconds ?? 25,
  };
}

/**
 * A secret file read when it changed (mtime, size or inode), so a rotated Secret
 * volume takes effect at the next upstream connection without a restart.
 */
export class SecretFile {
  private cached?: { key: string; value: string };

  constructor(readonly file: string) {}

  async read(): Promise<string> {
    const st = await fs.promises.stat(this.file);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.cached?.key === key) return this.cached.value;
    const value = (await fs.promises.readFile(this.file, 'utf8')).replace(/\r?\n$/, '');
    this.cached = { key, value };
    return value;
  }
}

/** The `kubernetes` block's file paths, relative to the config file like every other path. */
function resolveKubernetesPaths(k: KubernetesConfig, abs: (p: string | undefined) => string | undefined): KubernetesConfig {
  return {
    ...k,
    ...(k.identityDir !== undefined ? { identityDir: abs(k.identityDir)! } : {}),
    ...(k.sessionDir !== undefined ? { sessionDir: abs(k.sessionDir) } : {}),
    ...(k.upstream ? { upstream: { ...k.upstream, caFile: abs(k.upstream.caFile), tokenFile: abs(k.upstream.tokenFile) } } : {}),
    ...(k.oidc ? { oidc: k.oidc.map((o) => ({ ...o, caFile: abs(o.caFile) })) } : {}),
  };
}

