// The approval service's configuration (`agentgate approval --config FILE`),
// validated through core/yaml so every mistake is reported with file:line:col.
// Relative paths resolve against the config file's directory.

import fs from 'node:fs';
import path from 'node:path';
import { formatSourceError, loadYamlDocuments } from '../core/yaml/validate.js';
import type { Schema } from '../core/yaml/validate.js';
import type { AuthConfig } from './auth.js';
import type { WebhookConfig } from './webhooks.js';

export interface ApprovalConfig {
  listen: { host: string; port: number };
  metrics: { host: string; port: number } | false;
  /** Where approvers reach this service; printed in notifications' commands. */
  publicUrl: string;
  storage: { postgres: { url: string } } | { embedded: { dir?: string } };
  ttlSeconds: number;
  onceValiditySeconds?: number;
  maxWaitSeconds: number;
  requireApproveReason: boolean;
  minApprovals: number;
  approverGroups: { default: string[]; rules: Record<string, string[]> };
  auth: AuthConfig;
  webhooks: WebhookConfig[];
  audit?: { file: string; signingKeyFile?: string };
}

const str = { kind: 'string', nonEmpty: true } as const;
const strList = { kind: 'array', items: str } as const;
const hostPort = { kind: 'string', pattern: /^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, patternHint: 'host:port, e.g. 0.0.0.0:8080' } as const;

const schema: Schema = {
  kind: 'object',
  name: 'approval service config',
  fields: {
    listen: { schema: hostPort },
    metrics: { schema: { kind: 'any' } },
    publicUrl: { schema: str },
    storage: {
      schema: {
        kind: 'object',
        fields: {
          postgres: { schema: { kind: 'object', fields: { url: { schema: str }, urlFile: { schema: str } } } },
          embedded: { schema: { kind: 'object', fields: { dir: { schema: str } } } },
        },
      },
    },
    ttlSeconds: { schema: { kind: 'number', integer: true, min: 10, max: 7 * 86400 } },
    onceValiditySeconds: { schema: { kind: 'number', integer: true, min: 1, max: 7 * 86400 } },
    maxWaitSeconds: { schema: { kind: 'number', integer: true, min: 1, max: 600 } },
    requireApproveReason: { schema: { kind: 'boolean' } },
    minApprovals: { schema: { kind: 'number', integer: true, min: 1, max: 10 } },
    approverGroups: { schema: { kind: 'object', fields: { default: { schema: strList }, rules: { schema: { kind: 'map', values: strList } } } } },
    approvers: {
      schema: {
        kind: 'object',
        fields: {
          issuer: { schema: str, required: true },
          audience: { schema: str, required: true },
          jwksUri: { schema: str },
          usernameClaim: { schema: str },
          groupsClaim: { schema: str },
        },
      },
    },
    sidecars: {
      schema: {
        kind: 'object',
        fields: {
          issuer: { schema: str, required: true },
          audience: { schema: str },
          jwksUri: { schema: str },
          jwksFile: { schema: str },
          tokenReview: { schema: { kind: 'object', fields: { kubeconfig: { schema: str } } } },
        },
      },
    },
    clockToleranceSeconds: { schema: { kind: 'number', integer: true, min: 0, max: 300 } },
    webhooks: {
      schema: {
        kind: 'array',
        items: {
          kind: 'object',
          fields: {
            url: { schema: { kind: 'string', pattern: /^https?:\/\//, patternHint: 'an http(s) URL' }, required: true },
            retries: { schema: { kind: 'number', integer: true, min: 0, max: 10 } },
            backoffMs: { schema: { kind: 'number', integer: true, min: 10, max: 60_000 } },
            timeoutMs: { schema: { kind: 'number', integer: true, min: 100, max: 60_000 } },
          },
        },
      },
    },
    audit: { schema: { kind: 'object', fields: { file: { schema: str, required: true }, signingKeyFile: { schema: str } } } },
  },
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function splitHostPort(v: string): { host: string; port: number } {
  const i = v.lastIndexOf(':');
  return { host: v.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(v.slice(i + 1)) };
}

type Raw = {
  listen?: string; metrics?: unknown; publicUrl?: string;
  storage?: { postgres?: { url?: string; urlFile?: string }; embedded?: { dir?: string } };
  ttlSeconds?: number; onceValiditySeconds?: number; maxWaitSeconds?: number; requireApproveReason?: boolean; minApprovals?: number;
  approverGroups?: { default?: string[]; rules?: Record<string, string[]> };
  approvers?: AuthConfig['approvers']; sidecars?: AuthConfig['sidecars']; clockToleranceSeconds?: number;
  webhooks?: WebhookConfig[]; audit?: { file: string; signingKeyFile?: string };
};

export function parseApprovalConfig(text: string, file: string): ApprovalConfig {
  const docs = loadYamlDocuments<Raw>(text, file, schema);
  const errors = docs.flatMap((d) => d.errors);
  if (errors.length) throw new ConfigError(errors.map(formatSourceError).join('\n'));
  const raw = docs[0]?.value ?? {};
  const dir = path.dirname(path.resolve(file));
  const abs = (p: string) => path.resolve(dir, p);
  const fail = (m: string) => {
    throw new ConfigError(`${file}: ${m}`);
  };
  if (raw.storage?.postgres && raw.storage.embedded) fail('storage: choose postgres or embedded, not both');
  let storage: ApprovalConfig['storage'] = { embedded: {} };
  if (raw.storage?.postgres) {
    const p = raw.storage.postgres;
    const url = p.url ?? (p.urlFile ? fs.readFileSync(abs(p.urlFile), 'utf8').trim() : undefined);
    if (!url) fail('storage.postgres needs url or urlFile');
    storage = { postgres: { url: url! } };
  } else if (raw.storage?.embedded?.dir) storage = { embedded: { dir: abs(raw.storage.embedded.dir) } };
  if (!raw.approvers) fail('approvers (issuer, audience) is required: without it nobody could decide');
  if (!raw.sidecars) fail('sidecars (issuer and jwksUri, jwksFile or tokenReview) is required: without it no sidecar could ask');
  const s = raw.sidecars!;
  if (!s.jwksUri && !s.jwksFile && !s.tokenReview) fail('sidecars needs jwksUri, jwksFile or tokenReview');
  let metrics: ApprovalConfig['metrics'] = { host: '0.0.0.0', port: 9090 };
  if (raw.metrics === false) metrics = false;
  else if (typeof raw.metrics === 'string' && /^.+:\d+$/.test(raw.metrics)) metrics = splitHostPort(raw.metrics);
  else if (raw.metrics !== undefined) fail('metrics must be host:port or false');
  return {
    listen: splitHostPort(raw.listen ?? '0.0.0.0:8080'),
    metrics,
    publicUrl: raw.publicUrl ?? '',
    storage,
    ttlSeconds: raw.ttlSeconds ?? 900,
    ...(raw.onceValiditySeconds ? { onceValiditySeconds: raw.onceValiditySeconds } : {}),
    maxWaitSeconds: raw.maxWaitSeconds ?? 60,
    requireApproveReason: raw.requireApproveReason ?? false,
    minApprovals: raw.minApprovals ?? 1,
    approverGroups: { default: raw.approverGroups?.default ?? [], rules: raw.approverGroups?.rules ?? {} },
    auth: {
      approvers: raw.approvers,
      sidecars: { ...s, ...(s.jwksFile ? { jwksFile: abs(s.jwksFile) } : {}), ...(s.tokenReview?.kubeconfig ? { tokenReview: { kubeconfig: abs(s.tokenReview.kubeconfig) } } : {}) },
      clockToleranceSeconds: raw.clockToleranceSeconds ?? 30,
    },
    webhooks: raw.webhooks ?? [],
    ...(raw.audit ? { audit: { file: raw.audit.file === '-' ? '-' : abs(raw.audit.file), ...(raw.audit.signingKeyFile ? { signingKeyFile: abs(raw.audit.signingKeyFile) } : {}) } } : {}),
  };
}

export function loadApprovalConfig(file: string): ApprovalConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseApprovalConfig(text, file);
}
