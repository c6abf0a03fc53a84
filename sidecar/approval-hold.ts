// Holding an operation an `approve` rule stopped, whatever the protocol: ask the approval
// service, wait for the decision when the rule says so, and say how it ended. The gates
// (postgres/approval-gate.ts, kubernetes/approval-gate.ts) turn the outcome into their
// protocol's answer. Only `approved` lets the operation through; everything else is a
// refusal (fail closed): service down, slow, nonsense, a hold that ran out of time.
//
//   create → approved ⇒ use (consumes a `once` approval)
//          → denied/expired/… ⇒ refused
//          → pending, mode defer ⇒ deferred (the retry after approval finds it in scope)
//          → pending, mode wait  ⇒ long-poll up to waitSeconds:
//               aborted ⇒ cancel; timeout ⇒ cancel, yet a decision that landed just
//               before the cancel still counts; approved ⇒ use; otherwise refused.

import type { ApprovalSpec } from '../core/policy/types.js';
import { ApprovalRefused, ApprovalUnavailable } from '../approval/client.js';
import type { ApprovalClient } from '../approval/client.js';
import type { ApprovalRequest, CreateApprovalInput } from '../approval/types.js';

/** What audit events carry about the approval. */
export interface ApprovalRecord {
  id: string;
  approver?: string;
  state: string;
}

export type HoldKind = 'approved' | 'denied' | 'expired' | 'cancelled' | 'used' | 'timeout' | 'aborted' | 'deferred' | 'unavailable';

export interface HoldOutcome {
  /** `approved` means approved and used: the only outcome that lets the operation through. `used`: the approval could not be used. */
  kind: HoldKind;
  /** Where the hold ended: `create` when the service's first answer settled it. */
  step: 'create' | 'wait' | 'use';
  /** The approval request the outcome names, when there is one. */
  request?: ApprovalRequest;
  /** One sentence naming the approval and its outcome (for `unavailable`: why no decision could be obtained). */
  sentence: string;
  record?: ApprovalRecord;
  /** `unavailable` only: the approval client itself failed (not a clear answer from the service). */
  clientFailed?: boolean;
}

export interface HoldSteps {
  input: CreateApprovalInput;
  spec: ApprovalSpec;
  /** Aborted when the client cancels or goes away while the operation is held. */
  signal: AbortSignal;
  /** The request is pending and the hold starts waiting (mode wait). */
  onWait?(req: ApprovalRequest): void;
  /** Just before an approval is consumed. */
  beforeUse?(req: ApprovalRequest): void;
}

/** Matches what the policy engine gives when a rule has no approval block (core/policy/rules.ts defaults). */
export const DEFAULT_SPEC: ApprovalSpec = { mode: 'wait', scope: 'once', waitSeconds: 120, windowMinutes: 15, approverGroups: [], minApprovals: 1 };

export async function holdForApproval(client: ApprovalClient, s: HoldSteps): Promise<HoldOutcome> {
  let req: ApprovalRequest;
  try {
    req = await client.create(s.input);
  } catch (err) {
    return unavailable(err, 'create');
  }
  if (req.state === 'approved') return useApproval(client, req, s.beforeUse);
  if (req.state !== 'pending') return refusal(req, describe(req), 'create');
  if (s.spec.mode === 'defer') {
    return { kind: 'deferred', step: 'create', request: req, sentence: `approval ${req.id} is pending (mode defer): refused until approved`, record: record(req) };
  }
  s.onWait?.(req);
  let final: ApprovalRequest | undefined;
  try {
    final = await client.waitForDecision(req.id, { timeoutMs: s.spec.waitSeconds * 1000, signal: s.signal });
  } catch (err) {
    if (!s.signal.aborted) {
      void client.cancel(req.id).catch(() => undefined);
      return unavailable(err, 'wait', req.id);
    }
  }
  if (s.signal.aborted && (final === undefined || final.state === 'pending')) {
    const cancelled = await client.cancel(req.id).catch(() => undefined);
    return { kind: 'aborted', step: 'wait', request: req, sentence: `the hold was aborted while approval ${req.id} was pending`, record: { id: req.id, state: cancelled?.state ?? 'cancelled' } };
  }
  if (final === undefined) return unavailable(new Error('no answer'), 'wait', req.id);
  if (final.state === 'approved') return useApproval(client, final, s.beforeUse);
  if (final.state === 'pending') {
    const c = await client.cancel(req.id).catch(() => undefined);
    // A decision that landed between the last poll and the cancel still counts.
    if (c === undefined) {
      const now = await client.get(req.id).catch(() => undefined);
      if (now?.state === 'approved') return useApproval(client, now, s.beforeUse);
    }
    return {
      kind: 'timeout',
      step: 'wait',
      request: req,
      sentence: `approval ${req.id} was not decided within ${s.spec.waitSeconds}s`,
      record: { id: req.id, state: c?.state ?? 'cancelled' },
    };
  }
  return refusal(final, describe(final), 'wait');
}

/** Consume an approval; a service that refuses it (no longer valid, already used) makes it a refusal. */
export async function useApproval(client: ApprovalClient, req: ApprovalRequest, beforeUse?: (req: ApprovalRequest) => void): Promise<HoldOutcome> {
  beforeUse?.(req);
  let used: ApprovalRequest;
  try {
    used = await client.use(req.id);
  } catch (err) {
    if (err instanceof ApprovalRefused) return refusal(req, err.message, 'use');
    return unavailable(err, 'use', req.id);
  }
  return {
    kind: 'approved',
    step: 'use',
    request: used,
    sentence: describe({ ...used, state: 'approved' }),
    record: record({ ...used, decisions: used.decisions.length ? used.decisions : req.decisions }),
  };
}

/** A refusal naming `r`: its kind is the request's final state (`used` when an approval could not be used). */
export function refusal(r: ApprovalRequest, sentence: string, step: HoldOutcome['step']): HoldOutcome {
  const kind = r.state === 'denied' || r.state === 'expired' || r.state === 'cancelled' ? r.state : 'used';
  return { kind, step, request: r, sentence, record: record(r) };
}

/** No trustworthy answer: fail closed, naming the approval request when one was opened. */
export function unavailable(err: unknown, step: HoldOutcome['step'], id?: string): HoldOutcome {
  const known = err instanceof ApprovalUnavailable || err instanceof ApprovalRefused;
  return {
    kind: 'unavailable',
    step,
    sentence: (err as Error).message,
    ...(known ? {} : { clientFailed: true }),
    ...(id ? { record: { id, state: 'unknown' } } : {}),
  };
}

function approvers(r: ApprovalRequest, verdict: 'approve' | 'deny'): string[] {
  return r.decisions.filter((d) => d.verdict === verdict).map((d) => d.approver);
}

export function record(r: ApprovalRequest): ApprovalRecord {
  const by = approvers(r, r.state === 'denied' ? 'deny' : 'approve');
  return { id: r.id, state: r.state, ...(by.length ? { approver: by.join(', ') } : {}) };
}

/** One sentence naming the approval and its outcome. */
export function describe(r: ApprovalRequest): string {
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
