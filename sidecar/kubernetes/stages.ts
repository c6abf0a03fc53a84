// The stages every Kubernetes request passes, plain or upgrade, in this order:
// authenticate → canonicalize → classify → decide → audit gate → (body) → approval hold.
// Each either refuses (a Status, recorded) or fills in what it learnt and calls next.

import { canonicalTarget } from '../../core/kube/canonical.js';
import { impersonationRequests, readImpersonationHeaders, requestInfo, RequestInfoError } from '../../core/kube/request-info.js';
import type { ImpersonationHeaders } from '../../core/kube/request-info.js';
import type { KubeRequest } from '../../core/policy/types.js';
import { AuthenticationError } from './authenticate.js';
import { JUSTIFICATION_HEADER, noApprovalService } from './approval-gate.js';
import type { Classified, Decided, Exchange, SharedStage } from './exchange.js';
import { groupLabel } from './metrics.js';
import { maskOptionsFor } from './response-body.js';
import { isApiDocument, maskableAccept, upstreamHeaders } from './request-headers.js';
import { status, targetPhrase } from './status.js';

const message = (err: unknown) => (err instanceof RequestInfoError ? err.message : (err as Error).message);

/** Who is asking: the local token or a configured OIDC issuer; 401 otherwise. */
export const authenticate: SharedStage = (next) => async (x) => {
  try {
    x.identity = await x.deps.auth.authenticate(x.req.headers.authorization);
  } catch (err) {
    const msg = err instanceof AuthenticationError ? err.message : 'authentication failed';
    return x.refuse(status(401, 'Unauthorized', `Unauthorized: agentgate: ${msg}`));
  }
  x.ctx.identity = x.identity;
  return next(x);
};

/** The one reading of the request target (core/kube/canonical.ts); 400 for an ambiguous one. */
export const canonicalize: SharedStage = (next) => (x) => {
  try {
    x.target = canonicalTarget(x.req.url ?? '/');
  } catch (err) {
    x.refuse(status(400, 'BadRequest', `agentgate: ${message(err)}`));
    return Promise.resolve();
  }
  return next(x);
};

const IMPERSONATION = Symbol('agentgate.impersonation');
type WithImpersonation = Exchange & { [IMPERSONATION]?: ImpersonationHeaders };

/** What the request does, as the API server's RequestInfoFactory reads the canonical target. */
export const classify: SharedStage = (next) => (x) => {
  let request: KubeRequest;
  try {
    request = requestInfo(x.req.method ?? 'GET', x.target!);
    const imp = readImpersonationHeaders(x.req.headers);
    if (imp) (x as WithImpersonation)[IMPERSONATION] = imp;
  } catch (err) {
    x.refuse(status(400, 'BadRequest', `agentgate: ${message(err)}`));
    return Promise.resolve();
  }
  x.request = request;
  x.ctx.request = request;
  x.labels.verb = request.verb;
  x.labels.group = groupLabel(request.apiGroup, request.nonResource);
  return next(x);
};

/**
 * The policy's decision, impersonation first (each impersonated attribute is its own
 * request, and none is ever held for approval), and the headers to send upstream.
 */
export const decide: SharedStage = (next) => (x0) => {
  const x = x0 as Classified;
  const { identity, request, deps, req } = x;
  const policy = deps.policy();
  let accept: string | undefined;
  if (isApiDocument(request, req.method ?? 'GET')) accept = req.headers.accept;
  else {
    accept = maskableAccept(req.headers.accept);
    if (accept === undefined) {
      x.refuse(status(406, 'NotAcceptable', `agentgate: responses are masked, which needs JSON; this client accepts only '${req.headers.accept}': ask for application/json (kubectl and client-go do by default)`, request));
      return Promise.resolve();
    }
  }
  const headers = upstreamHeaders(req.headers, deps.upstreamAuthorization(), accept);
  const imp = (x as WithImpersonation)[IMPERSONATION];
  if (imp) {
    x.ctx.impersonated = { username: imp.user ?? '', ...(imp.groups.length ? { groups: imp.groups } : {}) };
    let asks: KubeRequest[];
    try {
      asks = impersonationRequests(imp);
    } catch (err) {
      x.refuse(status(400, 'BadRequest', `agentgate: ${(err as Error).message}`));
      return Promise.resolve();
    }
    for (const ask of asks) {
      const d = policy.decide(identity, ask);
      if (d.action !== 'allow' && d.enforced) {
        x.ctx.decision = d;
        x.labels.decision = d.action;
        const msg = `${ask.resource} "${ask.name}" is forbidden: User "${identity.subject}" cannot impersonate ${ask.resource} through agentgate: ${d.action === 'approve' ? `approval required, and impersonation is never held for approval (allow or deny it in the policy): ${d.reason}` : d.reason}`;
        x.refuse(status(403, 'Forbidden', msg, ask));
        return Promise.resolve();
      }
    }
    // Allowed: the agent's impersonation headers go on as sent.
    for (const [name, value] of Object.entries(req.headers)) if (name.startsWith('impersonate-') && value !== undefined) headers[name] = value;
  } else if (deps.impersonate) {
    headers['impersonate-user'] = identity.subject;
    if (identity.groups.length) headers['impersonate-group'] = identity.groups.filter((g) => g !== 'system:authenticated');
  }

  const decision = policy.decide(identity, request);
  x.decision = decision;
  x.ctx.decision = decision;
  x.labels.decision = decision.action;
  if (decision.enforced && decision.action === 'approve') {
    if (!deps.approvals) {
      x.refuse(noApprovalService(decision, request));
      return Promise.resolve();
    }
    x.held = true;
  } else if (decision.enforced && decision.action !== 'allow') {
    x.refuse(status(403, 'Forbidden', `${targetPhrase(request)} is forbidden: ${decision.reason}`, request));
    return Promise.resolve();
  }
  x.labels.decision = decision.enforced ? decision.action : 'allow';
  x.policy = policy;
  x.headers = headers;
  return next(x0);
};

/** Nothing is done that could not be forwarded or recorded. */
export const auditGate: SharedStage = (next) => (x) => {
  const { deps } = x;
  if (deps.noUpstream) {
    x.labels.decision = 'deny';
    x.refuse(status(403, 'Forbidden', `agentgate: ${deps.noUpstream}`, x.request));
    return Promise.resolve();
  }
  const broken = deps.auditBroken?.();
  if (broken) {
    // The refusal itself tries to append, which is how a recovered trail lets requests through again.
    x.labels.decision = 'deny';
    x.refuse(status(503, 'ServiceUnavailable', `agentgate: the audit trail is unavailable (${broken}); requests are refused until it can record them again`, x.request));
    return Promise.resolve();
  }
  return next(x);
};

/** An `approve` decision waits here for the approval service; anything but an approval is a refusal. */
export const approvalHold: SharedStage = (next) => async (x0) => {
  const x = x0 as Decided;
  if (!x.held) return next(x0);
  const abort = new AbortController();
  const off = x.onGone(() => abort.abort());
  const j = x.req.headers[JUSTIFICATION_HEADER];
  const outcome = await x.deps.approvals!.hold({
    identity: x.identity,
    request: x.request,
    decision: x.decision,
    method: x.req.method ?? 'GET',
    url: x.target.target,
    ...(x.body ? { body: x.body } : {}),
    ...(typeof x.req.headers['content-type'] === 'string' ? { contentType: x.req.headers['content-type'] } : {}),
    maskOptions: maskOptionsFor(x.policy.masking),
    ...(typeof j === 'string' ? { justification: j } : {}),
    signal: abort.signal,
  });
  off();
  if (outcome.approval) x.ctx.approval = outcome.approval;
  if (outcome.forward) return next(x0);
  const extra = x.requestObject !== undefined ? { requestObject: x.requestObject } : {};
  if (abort.signal.aborted) return x.abandon(outcome.reason, extra);
  x.refuse(outcome.status!, extra, outcome.headers);
};

/** The stages plain requests and upgrades share, in order. */
export const ADMISSION: ReadonlyArray<SharedStage> = [authenticate, canonicalize, classify, decide, auditGate];
