// A request an `approve` rule stopped: ask the approval service and turn its answer into
// what the proxy does — forward the request, or answer with a Status naming the approval
// and its outcome. Anything that is not a clear approval is a refusal (fail closed):
// no service configured, service down, slow, answering nonsense, a hold that ran out.
//
//   mode wait  → create; hold the HTTP request up to the rule's waitSeconds (long-poll);
//                approved → use (consumes a `once` approval) → forward; otherwise 403.
//                The client going away aborts `signal`: the pending request is cancelled.
//   mode defer → 429 + Retry-After while pending (client-go retries that by itself, a
//                bounded number of times); the retry of the same operation by the same
//                identity finds the approval in scope and passes; 403 once the request
//                it asked for was denied or expired.
//
// The service reuses an approval in scope on create, but a denied request is not reused
// (a new create would open a fresh pending request), so the gate remembers, per identity
// and operation, the request a `defer` answer named: the retry asks about that one first.

import { createHash } from 'node:crypto';
import type { Identity } from '../../core/identity.js';
import type { ApprovalSpec, Decision, KubeRequest } from '../../core/policy/types.js';
import { ApprovalRefused, ApprovalUnavailable, howToApprove, specToInput } from '../../approval/client.js';
import type { ApprovalClient } from '../../approval/client.js';
import type { ApprovalRequest, CreateApprovalInput } from '../../approval/types.js';
import { status, targetPhrase } from './status.js';
import type { StatusObject } from './status.js';

/** The header an agent may set to tell approvers why (optional; never forwarded upstream). */
export const JUSTIFICATION_HEADER = 'agentgate-justification';
/** The service refuses longer justifications; longer ones are cut, not refused. */
const MAX_JUSTIFICATION = 2000;
/** Request bodies up to this size are part of the operation approvers see (masked by the service); larger ones by digest. */
const INLINE_BODY = 16 * 1024;
/** How many deferred requests the gate remembers (oldest forgotten first). */
const DEFERRED_MEMORY = 1024;

/** Matches what the policy engine gives when a rule has no approval block (core/policy/rules.ts defaults). */
const DEFAULT_SPEC: ApprovalSpec = { mode: 'wait', scope: 'once', waitSeconds: 120, windowMinutes: 15, approverGroups: [], minApprovals: 1 };

/** What audit events carry about the approval. */
export interface ApprovalRecord {
  id: string;
  approver?: string;
  state: string;
}

export interface KubeApprovalOutcome {
  forward: boolean;
  /** A sentence for the audit event (the decision's reason is kept; this goes into the message). */
  reason: string;
  approval?: ApprovalRecord;
  /** The answer when refused (403, or 429 while a `defer` request is pending). */
  status?: StatusObject;
  /** Extra response headers (Retry-After with a 429). */
  headers?: Record<string, string>;
}

export interface KubeHoldRequest {
  identity: Identity;
  request: KubeRequest;
  decision: Decision;
  method: string;
  /** The request URI as the agent sent it (path and query). */
  url: string;
  body?: Buffer;
  contentType?: string;
  justification?: string;
  /** Aborted when the client goes away while the request is held. */
  signal: AbortSignal;
}

export interface KubeApprovalGateOptions {
  /** The cluster name (the approval's `connection`). */
  cluster: string;
  /** Retry-After of a `defer` 429 (seconds). */
  retryAfterSeconds: number;
}

/**
 * The operation approvers see and a `once` approval is bound to: method and request URI, the
 * object it targets, and the request body (inline when small, else its digest), so an
 * approval of one body never covers another. The service masks it before storing it.
 */
export function operationOf(r: Pick<KubeHoldRequest, 'method' | 'url' | 'request' | 'body' | 'contentType'>): string {
  const k = r.request;
  const where = k.namespace ? ` in namespace "${k.namespace}"` : '';
  const sub = k.subresource ? `/${k.subresource}` : '';
  const lines = [`${r.method} ${r.url}`, `${k.verb} ${targetPhrase(k)}${sub ? ` (${k.resource}${sub})` : ''}${where}`];
  if (r.body && r.body.length) {
    if (r.body.length <= INLINE_BODY && !r.body.includes(0)) lines.push(r.body.toString('utf8'));
    else lines.push(`body: ${r.body.length} bytes, sha256 ${createHash('sha256').update(r.body).digest('hex')}`);
  }
  return lines.join('\n');
}

/** What a `window` approval covers: the same verb on the same kind of object in the same namespace (any name, any body). */
export function fingerprintOf(k: KubeRequest): string {
  return k.nonResource ? `${k.verb} ${k.path}` : `${k.verb} ${k.apiGroup}/${k.resource}${k.subresource ? `/${k.subresource}` : ''} ns=${k.namespace}`;
}

export class KubeApprovalGate {
  private readonly deferred = new Map<string, string>();

  constructor(private readonly client: ApprovalClient, private readonly opts: KubeApprovalGateOptions) {}

  async hold(r: KubeHoldRequest): Promise<KubeApprovalOutcome> {
    const spec = r.decision.approval ?? DEFAULT_SPEC;
    const rule = r.decision.rule;
    const operation = operationOf(r);
    const justification = r.justification?.trim().slice(0, MAX_JUSTIFICATION);
    const input: CreateApprovalInput = {
      protocol: 'kubernetes',
      connection: this.opts.cluster,
      operation,
      rule,
      ...specToInput(spec),
      ...(spec.scope === 'window' ? { fingerprint: fingerprintOf(r.request) } : {}),
      ...(justification ? { justification } : {}),
      ...(r.identity.via === 'oidc' ? { subject: r.identity.subject, ...(r.identity.issuer ? { issuer: r.identity.issuer } : {}) } : {}),
    };
    const ctx = { rule, request: r.request };

    if (spec.mode === 'defer') {
      const key = `${r.identity.subject}\0${r.identity.issuer ?? ''}\0${rule}\0${operation}`;
      const known = this.deferred.get(key);
      if (known) {
        let prev: ApprovalRequest | undefined;
        try {
          prev = await this.client.get(known);
        } catch (err) {
          if (!(err instanceof ApprovalRefused)) return unavailable(ctx, err, known);
          // not-found and the like: ask afresh below
        }
        if (prev && (prev.state === 'denied' || prev.state === 'expired')) {
          this.deferred.delete(key);
          return refused(ctx, prev, describe(prev));
        }
        if (prev?.state === 'approved') return this.use(ctx, prev, key);
        if (!prev || prev.state !== 'pending') this.deferred.delete(key);
      }
      let req: ApprovalRequest;
      try {
        req = await this.client.create(input);
      } catch (err) {
        return unavailable(ctx, err);
      }
      if (req.state === 'approved') return this.use(ctx, req, key);
      if (req.state !== 'pending') return refused(ctx, req, describe(req));
      this.remember(key, req.id);
      const after = this.opts.retryAfterSeconds;
      return {
        forward: false,
        reason: `approval ${req.id} is pending (mode defer): refused until approved`,
        approval: record(req),
        headers: { 'retry-after': String(after) },
        status: status(
          429,
          'TooManyRequests',
          `${targetPhrase(r.request)} needs approval: rule '${rule}' requires a human approval; ${howToApprove(req.id)}; retry the request once it is approved (approval ${req.id} is pending)`,
          r.request,
          after,
        ),
      };
    }

    let req: ApprovalRequest;
    try {
      req = await this.client.create(input);
    } catch (err) {
      return unavailable(ctx, err);
    }
    if (req.state === 'approved') return this.use(ctx, req);
    if (req.state !== 'pending') return refused(ctx, req, describe(req));
    let final: ApprovalRequest | undefined;
    try {
      final = await this.client.waitForDecision(req.id, { timeoutMs: spec.waitSeconds * 1000, signal: r.signal });
    } catch (err) {
      if (!r.signal.aborted) {
        void this.client.cancel(req.id).catch(() => undefined);
        return unavailable(ctx, err, req.id);
      }
    }
    if (r.signal.aborted && (final === undefined || final.state === 'pending')) {
      const cancelled = await this.client.cancel(req.id).catch(() => undefined);
      return {
        forward: false,
        reason: `the client disconnected while approval ${req.id} was pending; the request was cancelled`,
        approval: { id: req.id, state: cancelled?.state ?? 'cancelled' },
        status: status(499, 'Timeout', `agentgate: the client went away while approval ${req.id} was pending`, r.request),
      };
    }
    if (final === undefined) return unavailable(ctx, new Error('no answer'), req.id);
    if (final.state === 'approved') return this.use(ctx, final);
    if (final.state === 'pending') {
      const c = await this.client.cancel(req.id).catch(() => undefined);
      // A decision that landed between the last poll and the cancel still counts.
      if (c === undefined) {
        const now = await this.client.get(req.id).catch(() => undefined);
        if (now?.state === 'approved') return this.use(ctx, now);
      }
      const sentence = `approval ${req.id} was not decided within ${spec.waitSeconds}s; the request was not sent and the approval request is cancelled (send it again to ask again)`;
      return { forward: false, reason: sentence, approval: { id: req.id, state: c?.state ?? 'cancelled' }, status: forbidden(ctx, sentence) };
    }
    return refused(ctx, final, describe(final));
  }

  private remember(key: string, id: string): void {
    this.deferred.delete(key);
    this.deferred.set(key, id);
    if (this.deferred.size > DEFERRED_MEMORY) this.deferred.delete(this.deferred.keys().next().value as string);
  }

  private async use(ctx: Ctx, req: ApprovalRequest, deferKey?: string): Promise<KubeApprovalOutcome> {
    if (deferKey) this.deferred.delete(deferKey);
    let used: ApprovalRequest;
    try {
      used = await this.client.use(req.id);
    } catch (err) {
      if (err instanceof ApprovalRefused) return refused(ctx, req, err.message);
      return unavailable(ctx, err, req.id);
    }
    return { forward: true, reason: describe({ ...used, state: 'approved' }), approval: record({ ...used, decisions: used.decisions.length ? used.decisions : req.decisions }) };
  }
}

interface Ctx {
  rule: string;
  request: KubeRequest;
}

function forbidden(ctx: Ctx, sentence: string): StatusObject {
  return status(403, 'Forbidden', `${targetPhrase(ctx.request)} is forbidden: ${sentence} (rule '${ctx.rule}')`, ctx.request);
}

function approvers(r: ApprovalRequest, verdict: 'approve' | 'deny'): string[] {
  return r.decisions.filter((d) => d.verdict === verdict).map((d) => d.approver);
}

function record(r: ApprovalRequest): ApprovalRecord {
  const by = approvers(r, r.state === 'denied' ? 'deny' : 'approve');
  return { id: r.id, state: r.state, ...(by.length ? { approver: by.join(', ') } : {}) };
}

/** One sentence naming the approval and its outcome. */
function describe(r: ApprovalRequest): string {
  switch (r.state) {
    case 'approved': {
      const by = approvers(r, 'approve');
      return `approval ${r.id} was approved${by.length ? ` by ${by.join(', ')}` : ''}`;
    }
    case 'denied': {
      const d = r.decisions.find((x) => x.verdict === 'deny');
      return `approval ${r.id} was denied${d ? ` by ${d.approver}: ${d.reason}` : ''}`;
    }
    case 'expired':
      return `approval ${r.id} expired before it was decided`;
    case 'cancelled':
      return `approval ${r.id} was cancelled`;
    case 'used':
      return `approval ${r.id} was already used`;
    default:
      return `approval ${r.id} is ${r.state}`;
  }
}

function refused(ctx: Ctx, r: ApprovalRequest, sentence: string): KubeApprovalOutcome {
  return { forward: false, reason: sentence, approval: record(r), status: forbidden(ctx, sentence) };
}

function unavailable(ctx: Ctx, err: unknown, id?: string): KubeApprovalOutcome {
  const why = err instanceof ApprovalUnavailable || err instanceof ApprovalRefused ? err.message : `the approval client failed: ${(err as Error).message}`;
  const sentence = `approval required, but no decision could be obtained (fail closed): ${why}`;
  return {
    forward: false,
    reason: sentence,
    ...(id ? { approval: { id, state: 'unknown' } } : {}),
    status: forbidden(ctx, sentence),
  };
}

/** The refusal when a rule needs approval and this sidecar has no approval service configured. */
export function noApprovalService(decision: Decision, request: KubeRequest): StatusObject {
  return status(
    403,
    'Forbidden',
    `${targetPhrase(request)} is forbidden: approval required: ${decision.reason}; no approval service is configured for this sidecar, so the request was not sent (fail closed)`,
    request,
  );
}
