// The request headers sent upstream, and which documents pass in any format.

import type { IncomingHttpHeaders } from 'node:http';
import type { KubeRequest } from '../../core/policy/types.js';
import { JUSTIFICATION_HEADER } from './approval-gate.js';

// Never forwarded: hop-by-hop headers, the agent's credential, and encodings we
// could not mask (the response must arrive as plain JSON or text).
const DROP = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'authorization', 'accept-encoding', 'accept', 'content-length', 'http2-settings',
  JUSTIFICATION_HEADER,
]);

const DISCOVERY = /^\/(api|apis|api\/[^/]+|apis\/[^/]+|apis\/[^/]+\/[^/]+)$/;

/**
 * Documents that describe the API and carry no cluster data: discovery, the OpenAPI
 * documents and /version. They pass as the server sends them, in the format the client
 * asked for (kubectl reads /openapi/v2 and v3 as protobuf).
 */
export function isApiDocument(r: KubeRequest, method: string): boolean {
  if (!r.nonResource || (method !== 'GET' && method !== 'HEAD')) return false;
  const p = r.path;
  return p === '/version' || p === '/openapi/v2' || p === '/openapi/v3' || p.startsWith('/openapi/v3/') || DISCOVERY.test(p);
}

/**
 * The Accept the API server sees for a resource: protobuf and CBOR removed (they cannot be
 * masked as they stream), the rest kept with its parameters (`as=Table` stays a JSON Table);
 * no Accept means JSON. Undefined when the client accepts nothing we can mask.
 */
export function maskableAccept(accept: string | undefined): string | undefined {
  if (!accept) return 'application/json';
  let kept = '';
  for (const part of accept.split(',')) {
    const s = part.trim();
    if (s === '' || /protobuf|cbor/i.test(s)) continue;
    kept = kept ? `${kept}, ${s}` : s;
  }
  return kept || undefined;
}

export function upstreamHeaders(h: IncomingHttpHeaders, authorization: string, accept: string | undefined): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(h)) {
    if (value === undefined || DROP.has(name) || name.startsWith('impersonate-') || name.startsWith('sec-websocket-')) continue;
    out[name] = value;
  }
  if (accept !== undefined) out.accept = accept;
  out.authorization = authorization;
  return out;
}
