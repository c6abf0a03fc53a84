// What of a request body goes into the audit trail (and before an approver).
// - Requests that carry credentials by what they are — Secrets, service-account
//   TokenRequests, TokenReviews, CertificateSigningRequests — never have a body recorded,
//   whatever the level: metadata only, as the Kubernetes audit-policy documentation
//   recommends for them (a masked Secret would still hold its password).
// - Other bodies are parsed the way the API server reads them (JSON, or YAML for
//   server-side apply) and the parsed document is masked (document-mask.ts): `\u`
//   escapes and YAML folding are undone by the parser, so a PAN spelled with them is
//   masked like any other. A body that cannot be parsed is not recorded, only its size
//   and digest: the raw bytes could hold anything.

import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import type { MaskOptions } from '../../core/mask/options.js';
import type { KubeRequest } from '../../core/policy/types.js';
import { DocumentMasker } from './document-mask.js';

/** Why a request's bodies are never recorded, or undefined when they may be (masked). */
export function credentialBearing(r: KubeRequest | undefined): string | undefined {
  if (!r || r.nonResource) return undefined;
  if (r.apiGroup === '' && r.resource === 'secrets') return 'Secret';
  if (r.apiGroup === '' && r.resource === 'serviceaccounts' && r.subresource === 'token') return 'service-account token';
  if (r.apiGroup === 'authentication.k8s.io' && r.resource === 'tokenreviews') return 'TokenReview';
  if (r.apiGroup === 'certificates.k8s.io' && r.resource === 'certificatesigningrequests') return 'CertificateSigningRequest';
  return undefined;
}

const JSON_TYPE = /^application\/(json|[a-z0-9.+-]*\+json)\s*(;|$)/i;
const YAML_TYPE = /^application\/([a-z0-9.+-]*\+)?yaml\s*(;|$)/i;

/** A parsed request body, or undefined when it is neither JSON nor YAML or does not parse. */
export function parseBody(body: Buffer, contentType: string | undefined): { doc: unknown } | undefined {
  const ct = (contentType ?? '').trim();
  try {
    // The API server reads a body without a content type as JSON.
    if (ct === '' || JSON_TYPE.test(ct)) return { doc: JSON.parse(body.toString('utf8')) as unknown };
    if (YAML_TYPE.test(ct)) return { doc: parseYaml(body.toString('utf8'), { maxAliasCount: 100 }) as unknown };
  } catch {
    return undefined;
  }
  return undefined;
}

export function bodyDigest(body: Buffer): string {
  return `${body.length} bytes, sha256 ${createHash('sha256').update(body).digest('hex')}`;
}

/** The body as the audit event's `requestObject`: undefined for none or a credential-bearing request. */
export function auditableBody(body: Buffer, contentType: string | undefined, opts: MaskOptions, request?: KubeRequest): unknown {
  if (body.length === 0 || credentialBearing(request)) return undefined;
  const parsed = parseBody(body, contentType);
  if (!parsed) return { agentgate: `body not recorded: it is not JSON or YAML that parses (${contentType ?? 'no content type'}, ${bodyDigest(body)})` };
  return new DocumentMasker('mask', opts).maskDocument(parsed.doc);
}
