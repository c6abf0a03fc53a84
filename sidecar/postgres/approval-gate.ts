// A statement an `approve` rule stopped: ask the approval service, and turn its answer
// into what the session does — run the statement, or refuse it with an error that
// names the approval and its outcome. Everything that is not a clear approval is a
// refusal (fail closed): service down, slow, nonsense, a hold that ran out of time.
//
//   mode wait  → create; a NoticeResponse tells the client the id and how to approve;
//                long-poll up to the rule's waitSeconds (the proxy's own hold timeout:
//                clients have none); approved → use (consumes a `once` approval) → run.
//   mode defer → create; refuse at once unless the service already holds an approval in
//                scope (the agent's retry after approval finds it and passes).
// Aborting `signal` (CancelRequest, client gone) cancels the pending request.

import { fingerprintSync } from 'libpg-query';
import type { Identity } from '../../core/identity.js';
import type { ApprovalSpec, Decision } from '../../core/policy/types.js';
import { ApprovalRefused, ApprovalUnavailable, howToApprove, specToInput } from '../../approval/client.js';
import type { ApprovalClient } from '../../approval/client.js';
import type { ApprovalRequest, CreateApprovalInput } from '../../approval/types.js';
import type { PgErrorFields } from './wire.js';

/** What audit events carry about the approval. */
export interface ApprovalRecord {
  id: string;
  approver?: string;
  state: string;
}

/** A bounded label for metrics. */
export type HoldResult = 'approved' | 'denied' | 'expired' | 'timeout' | 'cancelled' | 'deferred' | 'unavailable';

export interface ApprovalOutcome {
  forward: boolean;
  result: HoldResult;
  /** A sentence for the audit event's decision reason. */
  reason: string;
  approval?: ApprovalRecord;
  /** The client's error when refused. */
  error?: PgErrorFields;
}

export interface HoldRequest {
  connection: string;
  sql: string;
  decision: Decision;
  identity: Identity;
  /** Aborted by CancelRequest or a client that went away. */
  signal: AbortSignal;
  /** Sends the client a NoticeResponse while it waits. */
  notice(message: string, detail?: string): void;
}

/** Why a hold was aborted: the session sets this as the abort reason. */
export type AbortCause = 'cancel' | 'disconnect';

/** Matches what the policy engine gives when a rule has no approval block (core/policy/rules.ts defaults). */
const DEFAULT_SPEC: ApprovalSpec = { mode: 'wait', scope: 'once', waitSeconds: 120, windowMinutes: 15, approverGroups: [], minApprovals: 1 };

export class PgApprovalGate {
  constructor(private readonly client: ApprovalClient) {}

  async hold(r: HoldRequest): Promise<ApprovalOutcome> {
    const spec = r.decision.approval ?? DEFAULT_SPEC;
    const rule = r.decision.rule;
    const input: CreateApprovalInput = {
      protocol: 'postgres',
      connection: r.connection,
      operation: r.sql,
      rule,
      ...specToInput(spec),
      ...(spec.scope === 'window' ? { fingerprint: fingerprintOf(r.sql) } : {}),
      ...(r.identity.via === 'oidc' ? { subject: r.identity.subject, issuer: r.identity.issuer } : {}),
    };
    let req: ApprovalRequest;
    try {
      req = await this.client.create(input);
    } catch (err) {
      return unavailable(rule, err);
    }
    if (req.state === 'approved') return this.use(req, rule);
    if (req.state !== 'pending') return refused(req, rule, `approval ${req.id} is ${req.state}`);
    if (spec.mode === 'defer') {
      return {
        forward: false,
        result: 'deferred',
        reason: `approval ${req.id} is pending (mode defer): refused until approved`,
        approval: record(req),
        error: {
          severity: 'ERROR',
          code: '42501',
          message: `agentgate: approval required by rule "${rule}": ${howToApprove(req.id)}; run the statement again once it is approved`,
          detail: `approval ${req.id} is pending`,
          hint: `Ask an approver to run: agentgate approvals approve ${req.id}`,
        },
      };
    }
    r.notice(`agentgate: statement held for approval by rule "${rule}": ${howToApprove(req.id)}; waiting up to ${spec.waitSeconds}s`, `approval ${req.id}`);
    let final: ApprovalRequest | undefined;
    try {
      final = await this.client.waitForDecision(req.id, { timeoutMs: spec.waitSeconds * 1000, signal: r.signal });
    } catch (err) {
      if (!r.signal.aborted) {
        void this.client.cancel(req.id).catch(() => undefined);
        return unavailable(rule, err, req.id);
      }
    }
    if (r.signal.aborted && (final === undefined || final.state === 'pending')) {
      const cancelled = await this.client.cancel(req.id).catch(() => undefined);
      const cause = r.signal.reason as AbortCause;
      const st = cancelled?.state ?? 'cancelled';
      return {
        forward: false,
        result: 'cancelled',
        reason: cause === 'disconnect' ? `the client disconnected while approval ${req.id} was pending` : `the client cancelled the statement while approval ${req.id} was pending`,
        approval: { id: req.id, state: st },
        error: { severity: 'ERROR', code: '57014', message: 'canceling statement due to user request', detail: `agentgate: approval ${req.id} was cancelled` },
      };
    }
    if (final === undefined) return unavailable(rule, new Error('no answer'), req.id);
    switch (final.state) {
      case 'approved':
        return this.use(final, rule);
      case 'pending': {
        const c = await this.client.cancel(req.id).catch(() => undefined);
        // A decision that landed between the last poll and the cancel still counts.
        if (c === undefined) {
          const now = await this.client.get(req.id).catch(() => undefined);
          if (now?.state === 'approved') return this.use(now, rule);
        }
        return {
          forward: false,
          result: 'timeout',
          reason: `approval ${req.id} was not decided within ${spec.waitSeconds}s`,
          approval: { id: req.id, state: c?.state ?? 'cancelled' },
          error: {
            severity: 'ERROR',
            code: '42501',
            message: `agentgate: approval ${req.id} was not decided within ${spec.waitSeconds}s (rule "${rule}"); the statement was not run and the request is cancelled`,
            hint: 'Run the statement again to ask again, or ask an approver to be ready.',
          },
        };
      }
      default:
        return refused(final, rule, describe(final));
    }
  }

  private async use(req: ApprovalRequest, rule: string): Promise<ApprovalOutcome> {
    let used: ApprovalRequest;
    try {
      used = await this.client.use(req.id);
    } catch (err) {
      if (err instanceof ApprovalRefused) return refused(req, rule, err.message);
      return unavailable(rule, err, req.id);
    }
    return { forward: true, result: 'approved', reason: describe({ ...used, state: 'approved' }), approval: record(used) };
  }
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

function refused(r: ApprovalRequest, rule: string, sentence: string): ApprovalOutcome {
  return {
    forward: false,
    result: r.state === 'denied' ? 'denied' : r.state === 'expired' ? 'expired' : r.state === 'cancelled' ? 'cancelled' : 'unavailable',
    reason: sentence,
    approval: record(r),
    error: { severity: 'ERROR', code: '42501', message: `agentgate: permission denied: ${sentence} (rule "${rule}")` },
  };
}

function unavailable(rule: string, err: unknown, id?: string): ApprovalOutcome {
  const why = err instanceof ApprovalUnavailable || err instanceof ApprovalRefused ? err.message : `approval client failed: ${(err as Error).message}`;
  return {
    forward: false,
    result: 'unavailable',
    reason: `fail closed: ${why}`,
    ...(id ? { approval: { id, state: 'unknown' } } : {}),
    error: {
      severity: 'ERROR',
      code: '42501',
      message: `agentgate: approval required by rule "${rule}", but no decision could be obtained: ${why}`,
      hint: 'The statement is refused because the approval service gave no trustworthy answer (fail closed). Try again later.',
    },
  };
}

/** libpg-query's fingerprint (same statement shape, any literals): what a `window` approval is bound to. */
function fingerprintOf(sql: string): string | undefined {
  try {
    return fingerprintSync(sql);
  } catch {
    return undefined;
  }
}
