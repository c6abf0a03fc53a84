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
// The hold itself is protocol-neutral (../approval-hold.ts); this file words its outcome
// as PostgreSQL: a NoticeResponse while waiting, ErrorResponse fields when refused.

import { fingerprintSync } from 'libpg-query';
import type { Identity } from '../../core/identity.js';
import type { Decision } from '../../core/policy/types.js';
import { howToApprove, specToInput } from '../../approval/client.js';
import type { ApprovalClient } from '../../approval/client.js';
import type { CreateApprovalInput } from '../../approval/types.js';
import { DEFAULT_SPEC, holdForApproval } from '../approval-hold.js';
import type { ApprovalRecord, HoldKind, HoldOutcome } from '../approval-hold.js';
import type { PgErrorFields } from './wire.js';

export type { ApprovalRecord } from '../approval-hold.js';

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

const RESULT: Record<HoldKind, HoldResult> = {
  approved: 'approved',
  denied: 'denied',
  expired: 'expired',
  cancelled: 'cancelled',
  used: 'unavailable',
  timeout: 'timeout',
  aborted: 'cancelled',
  deferred: 'deferred',
  unavailable: 'unavailable',
};

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
    const o = await holdForApproval(this.client, {
      input,
      spec,
      signal: r.signal,
      onWait: (req) => r.notice(`agentgate: statement held for approval by rule "${rule}": ${howToApprove(req.id)}; waiting up to ${spec.waitSeconds}s`, `approval ${req.id}`),
    });
    return answer(o, rule, r.signal.reason as AbortCause);
  }
}

/** The neutral outcome as the session's answer: run the statement, or the ErrorResponse fields that refuse it. */
function answer(o: HoldOutcome, rule: string, cause: AbortCause): ApprovalOutcome {
  const result = RESULT[o.kind];
  const approval = o.record ? { approval: o.record } : {};
  if (o.kind === 'approved') return { forward: true, result, reason: o.sentence, ...approval };
  const [reason, error] = refusal(o, rule, cause);
  return { forward: false, result, reason, ...approval, error };
}

/** The audit reason and the client's error for a refused statement. */
function refusal(o: HoldOutcome, rule: string, cause: AbortCause): [string, PgErrorFields] {
  const id = o.record?.id ?? '';
  switch (o.kind) {
    case 'deferred':
      return [
        o.sentence,
        {
          severity: 'ERROR',
          code: '42501',
          message: `agentgate: approval required by rule "${rule}": ${howToApprove(id)}; run the statement again once it is approved`,
          detail: `approval ${id} is pending`,
          hint: `Ask an approver to run: agentgate approvals approve ${id}`,
        },
      ];
    case 'aborted':
      return [
        cause === 'disconnect' ? `the client disconnected while approval ${id} was pending` : `the client cancelled the statement while approval ${id} was pending`,
        { severity: 'ERROR', code: '57014', message: 'canceling statement due to user request', detail: `agentgate: approval ${id} was cancelled` },
      ];
    case 'timeout':
      return [
        o.sentence,
        {
          severity: 'ERROR',
          code: '42501',
          message: `agentgate: ${o.sentence} (rule "${rule}"); the statement was not run and the request is cancelled`,
          hint: 'Run the statement again to ask again, or ask an approver to be ready.',
        },
      ];
    case 'unavailable': {
      const why = o.clientFailed ? `approval client failed: ${o.sentence}` : o.sentence;
      return [
        `fail closed: ${why}`,
        {
          severity: 'ERROR',
          code: '42501',
          message: `agentgate: approval required by rule "${rule}", but no decision could be obtained: ${why}`,
          hint: 'The statement is refused because the approval service gave no trustworthy answer (fail closed). Try again later.',
        },
      ];
    }
    default: {
      // The service's first answer is stated as it is; later ones are described.
      const sentence = o.step === 'create' && o.request ? `approval ${o.request.id} is ${o.request.state}` : o.sentence;
      return [sentence, { severity: 'ERROR', code: '42501', message: `agentgate: permission denied: ${sentence} (rule "${rule}")` }];
    }
  }
}

/** libpg-query's fingerprint (same statement shape, any literals): what a `window` approval is bound to. */
function fingerprintOf(sql: string): string | undefined {
  try {
    return fingerprintSync(sql);
  } catch {
    return undefined;
  }
}
