// identify → classify → decide, shared by plain requests and upgrades (exec, attach,
// port-forward). The outcome is either a refusal (a Status to send) or the request
// classified and allowed, with the headers to send upstream.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { impersonationRequests, readImpersonationHeaders, requestInfo, RequestInfoError } from '../../core/kube/request-info.js';
import type { Identity } from '../../core/identity.js';
import type { Decision, KubeRequest, Policy } from '../../core/policy/types.js';
import type { AuditUser } from '../../core/audit/types.js';
import { AuthenticationError } from './authenticate.js';
import type { Authenticator } from './authenticate.js';
import { status, targetPhrase } from './status.js';
import { JUSTIFICATION_HEADER, noApprovalService } from './approval-gate.js';
import type { StatusObject } from './status.js';

export type Admission =
  | { ok: true; identity: Identity; request: KubeRequest; decision: Decision; policy: Policy; headers: Record<string, string | string[]>; impersonated?: AuditUser }
  | {
      ok: false;
      status: StatusObject;
      identity?: Identity;
      request?: KubeRequest;
      decision?: Decision;
      impersonated?: AuditUser;
      /**
       * Set when the refusal is an enforced `approve` decision: what forwarding needs if the
       * approval service approves. `status` is the answer when no approval service is configured.
       */
      approvable?: { identity: Identity; request: KubeRequest; decision: Decision; policy: Policy; headers: Record<string, string | string[]> };
    };

// Never forwarded: hop-by-hop headers, the agent's credential, and encodings we
// could not mask (the response must arrive as plain JSON or text).
const DROP = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'authorization', 'accept-encoding', 'accept', 'content-length', 'http2-settings',
  JUSTIFICATION_HEADER,
]);

/**
 * The Accept the API server sees: protobuf and CBOR removed (they cannot be masked as
 * they stream), JSON kept with its parameters (`as=Table` stays a JSON Table).
 */
export function jsonAccept(accept: string | undefined): string {
  if (!accept) return 'application/json';
  const kept = accept
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && !/protobuf|cbor/i.test(s));
  return kept.length ? kept.join(', ') : 'application/json';
}

export function upstreamHeaders(h: IncomingHttpHeaders, authorization: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(h)) {
    if (value === undefined || DROP.has(name) || name.startsWith('impersonate-') || name.startsWith('sec-websocket-')) continue;
    out[name] = value;
  }
  out.accept = jsonAccept(h.accept);
  out.authorization = authorization;
  return out;
}

export interface AdmitDeps {
  auth: Authenticator;
  policy: () => Policy;
  upstreamAuthorization: () => string;
  impersonate: boolean;
}

export async function admit(req: IncomingMessage, deps: AdmitDeps): Promise<Admission> {
  let identity: Identity;
  try {
    identity = await deps.auth.authenticate(req.headers.authorization);
  } catch (err) {
    const msg = err instanceof AuthenticationError ? err.message : 'authentication failed';
    return { ok: false, status: status(401, 'Unauthorized', `Unauthorized: agentgate: ${msg}`) };
  }

  let request: KubeRequest;
  let impersonation: ReturnType<typeof readImpersonationHeaders>;
  try {
    request = requestInfo(req.method ?? 'GET', req.url ?? '/');
    impersonation = readImpersonationHeaders(req.headers);
  } catch (err) {
    const msg = err instanceof RequestInfoError ? err.message : (err as Error).message;
    return { ok: false, identity, status: status(400, 'BadRequest', `agentgate: ${msg}`) };
  }

  const policy = deps.policy();
  const headers = upstreamHeaders(req.headers, deps.upstreamAuthorization());
  let impersonated: AuditUser | undefined;

  if (impersonation) {
    impersonated = { username: impersonation.user ?? '', ...(impersonation.groups.length ? { groups: impersonation.groups } : {}) };
    let asks: KubeRequest[];
    try {
      asks = impersonationRequests(impersonation);
    } catch (err) {
      return { ok: false, identity, request, impersonated, status: status(400, 'BadRequest', `agentgate: ${(err as Error).message}`) };
    }
    for (const ask of asks) {
      const d = policy.decide(identity, ask);
      if (d.action !== 'allow' && d.enforced) {
        const msg = `${ask.resource} "${ask.name}" is forbidden: User "${identity.subject}" cannot impersonate ${ask.resource} through agentgate: ${d.action === 'approve' ? `approval required, and impersonation is never held for approval (allow or deny it in the policy): ${d.reason}` : d.reason}`;
        return { ok: false, identity, request, decision: d, impersonated, status: status(403, 'Forbidden', msg, ask) };
      }
    }
    // Allowed: pass the agent's impersonation headers on as sent.
    for (const [name, value] of Object.entries(req.headers)) if (name.startsWith('impersonate-') && value !== undefined) headers[name] = value;
  } else if (deps.impersonate) {
    headers['impersonate-user'] = identity.subject;
    if (identity.groups.length) headers['impersonate-group'] = identity.groups.filter((g) => g !== 'system:authenticated');
  }

  const decision = policy.decide(identity, request);
  if (decision.action === 'allow' || !decision.enforced) return { ok: true, identity, request, decision, policy, headers, ...(impersonated ? { impersonated } : {}) };
  if (decision.action === 'approve') {
    return {
      ok: false, identity, request, decision, status: noApprovalService(decision, request),
      approvable: { identity, request, decision, policy, headers },
      ...(impersonated ? { impersonated } : {}),
    };
  }
  return { ok: false, identity, request, decision, impersonated, status: status(403, 'Forbidden', `${targetPhrase(request)} is forbidden: ${decision.reason}`, request) };
}
