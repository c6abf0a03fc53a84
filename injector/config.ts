// The injector's configuration: what sidecar to add and how. Loaded from YAML
// through core/yaml/validate.ts so every mistake is reported with file:line:col;
// values that YAML types cannot express (quantities, port clashes) are checked
// afterwards and reported at the same positions.

import { readFile } from 'node:fs/promises';
import { loadYamlDocuments, formatSourceError } from '../core/yaml/validate.js';
import type { Schema, SourceError } from '../core/yaml/validate.js';
import { parseQuantity } from './quantity.js';
import { PORTS } from './names.js';

export interface ResourceList {
  cpu?: string;
  memory?: string;
}

export interface Bounds {
  min: string;
  max: string;
}

export interface ConnectionConfig {
  /** Loopback port of the sidecar's PostgreSQL listener for this connection. */
  port: number;
  /** Secret holding the real database credentials; mounted into the sidecar only. */
  secret?: string;
  /** Database name put into `AGENTGATE_<NAME>_URL`. */
  database?: string;
}

export interface InjectorConfig {
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** The cluster supports native sidecars (Kubernetes ≥ 1.29, or 1.28 with the SidecarContainers gate). */
  nativeSidecars: boolean;
  resources: { requests: ResourceList; limits: ResourceList };
  /** Range within which `agentgate.dev/proxy-*` annotations may move the sidecar's resources. */
  resourceBounds: { cpu: Bounds; memory: Bounds };
  runAsUser: number;
  runAsGroup: number;
  identitySizeLimit: string;
  approval: { url: string; audience: string; tokenExpirationSeconds: number };
  /** Connection name (as used in `agentgate.dev/connections`) → listener and credentials. In config order. */
  connections: Record<string, ConnectionConfig>;
  /** Classic mode: how long the postStart hook waits for the proxy to be ready. */
  readyTimeoutSeconds: number;
  /**
   * Classic mode: the postStart hook command. The default runs `node` (present in the
   * agentgate image) with a short script polling `http://$AGENTGATE_POD_IP:15021/healthz/ready`.
   */
  classicReadyCommand?: string[];
  /**
   * Secrets that agent containers may reference (env, envFrom, secret volumes,
   * projected sources). The webhook cannot read a Secret's type, and a
   * service-account token Secret can have any name, so every other Secret is refused.
   */
  allowedSecrets: string[];
  /**
   * Who may opt a pod out with `agentgate.dev/inject: disabled` in an opted-in
   * namespace; anyone else's opt-out is refused (it would be a pod with the real
   * token and no proxy).
   */
  optOut: { namespaces: string[]; serviceAccounts: string[] };
}

export const DEFAULT_CONFIG: InjectorConfig = {
  image: 'ghcr.io/agentgate/agentgate:latest',
  imagePullPolicy: 'IfNotPresent',
  nativeSidecars: true,
  resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '256Mi' } },
  resourceBounds: { cpu: { min: '10m', max: '2' }, memory: { min: '32Mi', max: '1Gi' } },
  runAsUser: 65532,
  runAsGroup: 65532,
  identitySizeLimit: '1Mi',
  approval: { url: 'http://agentgate-approval.agentgate-system.svc:8080', audience: 'agentgate', tokenExpirationSeconds: 3600 },
  connections: {},
  readyTimeoutSeconds: 120,
  allowedSecrets: [],
  optOut: { namespaces: [], serviceAccounts: [] },
};

const quantity: Schema = { kind: 'any' };
const resourceList: Schema = { kind: 'object', fields: { cpu: { schema: quantity }, memory: { schema: quantity } } };
const bounds: Schema = { kind: 'object', fields: { min: { schema: quantity, required: true }, max: { schema: quantity, required: true } } };
const CONNECTION_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SERVICE_ACCOUNT_REF = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export const injectorConfigSchema: Schema = {
  kind: 'object',
  name: 'injector config',
  fields: {
    image: { schema: { kind: 'string', nonEmpty: true } },
    imagePullPolicy: { schema: { kind: 'string', enum: ['Always', 'IfNotPresent', 'Never'] } },
    nativeSidecars: { schema: { kind: 'boolean' } },
    resources: { schema: { kind: 'object', fields: { requests: { schema: resourceList }, limits: { schema: resourceList } } } },
    resourceBounds: { schema: { kind: 'object', fields: { cpu: { schema: bounds }, memory: { schema: bounds } } } },
    runAsUser: { schema: { kind: 'number', integer: true, min: 1 } },
    runAsGroup: { schema: { kind: 'number', integer: true, min: 1 } },
    identitySizeLimit: { schema: quantity },
    approval: {
      schema: {
        kind: 'object',
        fields: {
          url: { schema: { kind: 'string', pattern: /^https?:\/\/[^\s]+$/, patternHint: 'an http:// or https:// URL' } },
          audience: { schema: { kind: 'string', nonEmpty: true } },
          tokenExpirationSeconds: { schema: { kind: 'number', integer: true, min: 600, max: 86400 } },
        },
      },
    },
    connections: {
      schema: {
        kind: 'map',
        values: {
          kind: 'object',
          fields: {
            port: { schema: { kind: 'number', integer: true, min: 1024, max: 65535 } },
            secret: { schema: { kind: 'string', pattern: /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, patternHint: 'a Secret name' } },
            database: { schema: { kind: 'string', nonEmpty: true } },
          },
        },
      },
    },
    readyTimeoutSeconds: { schema: { kind: 'number', integer: true, min: 1, max: 3600 } },
    classicReadyCommand: { schema: { kind: 'array', items: { kind: 'string' }, minItems: 1 } },
    allowedSecrets: { schema: { kind: 'array', items: { kind: 'string', pattern: SECRET_NAME, patternHint: 'a Secret name' } } },
    optOut: {
      schema: {
        kind: 'object',
        fields: {
          namespaces: { schema: { kind: 'array', items: { kind: 'string', pattern: NAMESPACE_NAME, patternHint: 'a namespace name' } } },
          serviceAccounts: { schema: { kind: 'array', items: { kind: 'string', pattern: SERVICE_ACCOUNT_REF, patternHint: 'namespace/service-account' } } },
        },
      },
    },
  },
};

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly errors: SourceError[]) {
    super(errors.map(formatSourceError).join('\n'));
  }
}

type RawConfig = Partial<Omit<InjectorConfig, 'connections' | 'optOut'>> & {
  connections?: Record<string, Partial<ConnectionConfig>>;
  optOut?: Partial<InjectorConfig['optOut']>;
};

/** Parses and validates an injector config; throws ConfigError listing every problem with its position. */
export function parseInjectorConfig(text: string, file: string): InjectorConfig {
  const docs = loadYamlDocuments<RawConfig>(text, file, injectorConfigSchema);
  if (docs.length > 1) throw new ConfigError([{ file, line: 1, col: 1, message: 'expected one YAML document, found several' }]);
  if (docs.length === 0) return structuredClone(DEFAULT_CONFIG);
  const doc = docs[0];
  if (doc.errors.length) throw new ConfigError(doc.errors);
  const raw = doc.value ?? {};
  const errors: SourceError[] = [];
  const fail = (path: (string | number)[], message: string) =>
    errors.push({ file, ...doc.positionOf(path), message: `${path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${p}`)).join('')}: ${message}` });
  const q = (v: unknown, path: (string | number)[]): string | undefined => {
    if (v === undefined) return undefined;
    if ((typeof v !== 'string' && typeof v !== 'number') || parseQuantity(v) === undefined) {
      fail(path, `invalid quantity '${String(v)}' (expected e.g. 100m, 0.5, 64Mi)`);
      return undefined;
    }
    return String(v);
  };

  const d = DEFAULT_CONFIG;
  const res = (kind: 'requests' | 'limits'): ResourceList => ({
    cpu: q(raw.resources?.[kind]?.cpu, ['resources', kind, 'cpu']) ?? d.resources[kind].cpu,
    memory: q(raw.resources?.[kind]?.memory, ['resources', kind, 'memory']) ?? d.resources[kind].memory,
  });
  const bound = (r: 'cpu' | 'memory'): Bounds => ({
    min: q(raw.resourceBounds?.[r]?.min, ['resourceBounds', r, 'min']) ?? d.resourceBounds[r].min,
    max: q(raw.resourceBounds?.[r]?.max, ['resourceBounds', r, 'max']) ?? d.resourceBounds[r].max,
  });

  const connections: Record<string, ConnectionConfig> = {};
  const used = new Map<number, string>([
    [PORTS.kubernetes, 'the Kubernetes API proxy'],
    [PORTS.health, 'the health endpoint'],
    [PORTS.metrics, 'the metrics endpoint'],
  ]);
  let next = PORTS.postgresFirst;
  for (const [name, c] of Object.entries(raw.connections ?? {})) {
    if (!CONNECTION_NAME.test(name)) fail(['connections', name], `invalid connection name '${name}' (lower-case letters, digits and '-')`);
    let port = c?.port;
    if (port === undefined) {
      while (used.has(next)) next++;
      port = next;
    }
    if (used.has(port)) fail(['connections', name, 'port'], `port ${port} is already used by ${used.get(port)}`);
    used.set(port, `connection '${name}'`);
    connections[name] = { port, ...(c?.secret ? { secret: c.secret } : {}), ...(c?.database ? { database: c.database } : {}) };
  }

  const cfg: InjectorConfig = {
    image: raw.image ?? d.image,
    imagePullPolicy: raw.imagePullPolicy ?? d.imagePullPolicy,
    nativeSidecars: raw.nativeSidecars ?? d.nativeSidecars,
    resources: { requests: res('requests'), limits: res('limits') },
    resourceBounds: { cpu: bound('cpu'), memory: bound('memory') },
    runAsUser: raw.runAsUser ?? d.runAsUser,
    runAsGroup: raw.runAsGroup ?? d.runAsGroup,
    identitySizeLimit: q(raw.identitySizeLimit, ['identitySizeLimit']) ?? d.identitySizeLimit,
    approval: { ...d.approval, ...(raw.approval ?? {}) },
    connections,
    readyTimeoutSeconds: raw.readyTimeoutSeconds ?? d.readyTimeoutSeconds,
    ...(raw.classicReadyCommand ? { classicReadyCommand: raw.classicReadyCommand } : {}),
    allowedSecrets: [...new Set(raw.allowedSecrets ?? [])].sort(),
    optOut: {
      namespaces: [...new Set(raw.optOut?.namespaces ?? [])].sort(),
      serviceAccounts: [...new Set(raw.optOut?.serviceAccounts ?? [])].sort(),
    },
  };
  (raw.allowedSecrets ?? []).forEach((name, i) => {
    const conn = Object.entries(connections).find(([, c]) => c.secret === name);
    if (conn) fail(['allowedSecrets', i], `'${name}' is the Secret of connection '${conn[0]}': only the proxy may read database credentials`);
  });
  for (const r of ['cpu', 'memory'] as const) {
    const b = cfg.resourceBounds[r];
    if (parseQuantity(b.min)! > parseQuantity(b.max)!) fail(['resourceBounds', r], `min ${b.min} is above max ${b.max}`);
    const req = cfg.resources.requests[r];
    const lim = cfg.resources.limits[r];
    if (req && lim && parseQuantity(req)! > parseQuantity(lim)!) fail(['resources', 'requests', r], `request ${req} is above limit ${lim}`);
  }
  if (errors.length) throw new ConfigError(errors.sort((a, b) => a.line - b.line || a.col - b.col));
  return cfg;
}

export async function loadInjectorConfig(file: string): Promise<InjectorConfig> {
  return parseInjectorConfig(await readFile(file, 'utf8'), file);
}
