// The upstream response headers the agent gets: only those a Kubernetes client reads,
// each value masked as text. A `Warning:` header carries admission webhooks' words
// verbatim (kubectl prints them), so it can hold a card number like any body; headers
// outside the list (cookies, an aggregated API server's own) are dropped, not passed.
// Content-Length and Audit-Id are set by the proxy itself.

import { maskText } from '../../core/mask/text.js';
import type { MaskOptions } from '../../core/mask/options.js';

const PASSED = new Set([
  'content-type',
  'cache-control',
  'date',
  'expires',
  'etag',
  'last-modified',
  'vary',
  'location',
  'retry-after',
  'warning',
  'www-authenticate',
  'x-content-type-options',
  'x-kubernetes-pf-flowschema-uid',
  'x-kubernetes-pf-prioritylevel-uid',
]);

export function responseHeaders(upstream: Record<string, string | string[] | undefined>, auditID: string, opts: MaskOptions): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    const v = upstream[name];
    if (v === undefined || !PASSED.has(name)) continue;
    out[name] = typeof v === 'string' ? maskText(v, opts) : v.map((x) => maskText(x, opts));
  }
  out['audit-id'] = auditID;
  return out;
}
