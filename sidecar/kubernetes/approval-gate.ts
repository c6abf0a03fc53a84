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
// The hold itself is protocol-neutral (../approval-hold.ts); this file words its outcome
// as a Kubernetes Status (403, 429 + Retry-After, 499).

import type { Identity } from '../../core/identity.js';
import { maskText } from '../../core/mask/text.js';
import type { MaskOptions } from '../../core/mask/options.js';
import type { Decision, KubeRequest } from '../../core/policy/types.js';
import { ApprovalRefused, howToApprove, specToInput } from '../../approval/client.js';
import type { ApprovalClient } from '../../approval/client.js';
import type { ApprovalRequest, CreateApprovalInput } from '../../approval/types.js';
import { DEFAULT_SPEC, describe, holdForApproval, refusal, unavailable, useApproval } from '../approval-hold.js';
import type { ApprovalRecord, HoldOutcome } from '../approval-hold.js';
import { status, targetPhrase } from './status.js';
import { bodyDigest, credentialBearing, parseBody } from './audit-body.js';
import { DocumentMasker } from './document-mask.js';
import type { StatusObject } from './status.js';

export type { ApprovalRecord } from '../approval-hold.js';

/** The header an agent may set to tell approvers why (optional; never forwarded upstream). */
export const JUSTIFICATION_HEADER = 'agentgate-justification';
/** The service refuses longer justifications; longer ones are cut, not refused. */
const MAX_JUSTIFICATION = 2000;
/** Request bodies whose masked rendering is up to this size are shown to approvers; larger ones by digest only. */
const INLINE_BODY = 16 * 1024;
/** How many deferred requests the gate remembers (oldest forgotten first). */
const DEFERRED_MEMORY = 1024;

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
  /** The policy's masking options (default: core/mask's defaults). */
  maskOptions?: MaskOptions;
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
 * object it targets, and the request body — parsed and masked, a Secret's with every value
 * emptied, other credential-bearing bodies not shown at all — then the body's digest, so
 * an approval of one body never covers another (masking can make two bodies look alike).
 * Nothing in it is a card number or a credential.
 */
export function operationOf(r: Pick<KubeHoldRequest, 'method' | 'url' | 'request' | 'body' | 'contentType' | 'maskOptions'>): string {
  const k = r.request;
  const opts = r.maskOptions ?? {};
  const where = k.namespace ? ` in namespace "${k.namespace}"` : '';
  const sub = k.subresource ? `/${k.subresource}` : '';
  const lines = [`${r.method} ${maskText(r.url, opts)}`, maskText(`${k.verb} ${targetPhrase(k)}${sub ? ` (${k.resource}${sub})` : ''}${where}`, opts)];
  if (r.body && r.body.length) {
    const shown = shownBody(r.body, r.contentType, k, opts);
    if (shown !== undefined && shown.length <= INLINE_BODY) lines.push(shown);
    lines.push(`body: ${bodyDigest(r.body)}`);
  }
  return lines.join('\n');
}

function shownBody(body: Buffer, contentType: string | undefined, k: KubeRequest, opts: MaskOptions): string | undefined {
  const credentials = credentialBearing(k);
  if (credentials && credentials !== 'Secret') return undefined;
  const parsed = parseBody(body, contentType);
  if (!parsed) return undefined;
  const doc = credentials ? new DocumentMasker('redact', opts).maskDocument(parsed.doc, true) : new DocumentMasker('mask', opts).maskDocument(parsed.doc);
  return JSON.stringify(doc);
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
    const justification = r.justification === undefined ? undefined : maskText(r.justification.trim().slice(0, MAX_JUSTIFICATION), r.maskOptions ?? {});
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
    const ctx: Ctx = { rule, request: r.request, retryAfterSeconds: this.opts.retryAfterSeconds };
    if (spec.mode !== 'defer') return answer(ctx, await holdForApproval(this.client, { input, spec, signal: r.signal }));

    const key = `${r.identity.subject}\0${r.identity.issuer ?? ''}\0${rule}\0${operation}`;
    const known = this.deferred.get(key);
    const forget = (): void => void this.deferred.delete(key);
    if (known) {
      let prev: ApprovalRequest | undefined;
      try {
        prev = await this.client.get(known);
      } catch (err) {
        if (!(err instanceof ApprovalRefused)) return answer(ctx, unavailable(err, 'create', known));
        // not-found and the like: ask afresh below
      }
      if (prev && (prev.state === 'denied' || prev.state === 'expired')) {
        forget();
        return answer(ctx, refusal(prev, describe(prev), 'create'));
      }
      if (prev?.state === 'approved') return answer(ctx, await useApproval(this.client, prev, forget));
      if (!prev || prev.state !== 'pending') forget();
    }
    const o = await holdForApproval(this.client, { input, spec, signal: r.signal, beforeUse: forget });
    if (o.kind === 'deferred' && o.request) this.remember(key, o.request.id);
    return answer(ctx, o);
  }

  private remember(key: string, id: string): void {
    this.deferred.delete(key);
    this.deferred.set(key, id);
    if (this.deferred.size > DEFERRED_MEMORY) this.deferred.delete(this.deferred.keys().next().value as string);
  }
}

interface Ctx {
  rule: string;
  request: KubeRequest;
  /** Retry-After of a `defer` 429. */
  retryAfterSeconds: number;
}

/** The neutral outcome as the proxy's answer: forward, or the Status (and headers) that refuse the request. */
function answer(ctx: Ctx, o: HoldOutcome): KubeApprovalOutcome {
  const id = o.record?.id ?? '';
  const approval = o.record ? { approval: o.record } : {};
  switch (o.kind) {
    case 'approved':
      return { forward: true, reason: o.sentence, ...approval };
    case 'deferred':
      return {
        forward: false,
        reason: o.sentence,
        ...approval,
        headers: { 'retry-after': String(ctx.retryAfterSeconds) },
        status: status(
          429,
          'TooManyRequests',
          `${targetPhrase(ctx.request)} needs approval: rule '${ctx.rule}' requires a human approval; ${howToApprove(id)}; retry the request once it is approved (approval ${id} is pending)`,
          ctx.request,
          ctx.retryAfterSeconds,
        ),
      };
    case 'aborted':
      return {
        forward: false,
        reason: `the client disconnected while approval ${id} was pending; the request was cancelled`,
        ...approval,
        status: status(499, 'Timeout', `agentgate: the client went away while approval ${id} was pending`, ctx.request),
      };
    case 'timeout': {
      const sentence = `${o.sentence}; the request was not sent and the approval request is cancelled (send it again to ask again)`;
      return { forward: false, reason: sentence, ...approval, status: forbidden(ctx, sentence) };
    }
    case 'unavailable': {
      const why = o.clientFailed ? `the approval client failed: ${o.sentence}` : o.sentence;
      const sentence = `approval required, but no decision could be obtained (fail closed): ${why}`;
      return { forward: false, reason: sentence, ...approval, status: forbidden(ctx, sentence) };
    }
    default:
      return { forward: false, reason: o.sentence, ...approval, status: forbidden(ctx, o.sentence) };
  }
}

function forbidden(ctx: Ctx, sentence: string): StatusObject {
  return status(403, 'Forbidden', `${targetPhrase(ctx.request)} is forbidden: ${sentence} (rule '${ctx.rule}')`, ctx.request);
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
