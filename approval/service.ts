// The approval service's rules, independent of HTTP: who may create, read and
// decide what, how scopes bind approvals, when requests expire, and what is
// recorded. The HTTP layer (http.ts) only authenticates and translates.

import { createHash, randomUUID } from 'node:crypto';
import type { AuditEventInput, AuditSink } from '../core/audit/types.js';
import { maskText } from '../core/mask/index.js';
import type { MaskOptions } from '../core/mask/index.js';
import { createLogger } from '../core/log.js';
import { Changes } from './changes.js';
import { approvalDecisionSeconds, approvalPending, approvalRequests } from './metrics.js';
import type { RequestResult } from './metrics.js';
import type { ApprovalStore } from './store.js';
import { StoreNotFound } from './store.js';
import type { ApprovalRequest, ApprovalState, CreateApprovalInput, Requester } from './types.js';
import { ApprovalError, FINAL_STATES } from './types.js';
import type { PodIdentity } from '../core/identity.js';
import { serviceAccountSubject } from '../core/identity.js';

const log = createLogger('approval');

/** A sidecar, authenticated by its pod-bound service-account token. */
export interface SidecarPrincipal {
  kind: 'sidecar';
  subject: string;
  pod: PodIdentity;
}

/** A human approver, authenticated by an OIDC JWT. */
export interface ApproverPrincipal {
  kind: 'approver';
  subject: string;
  groups: string[];
  issuer: string;
}

export type Principal = SidecarPrincipal | ApproverPrincipal;

export interface ApprovalServiceOptions {
  store: ApprovalStore;
  /** Pending requests expire after this long (default 15 minutes). */
  ttlSeconds?: number;
  /** How long a granted `once` approval stays usable (default: ttlSeconds). */
  onceValiditySeconds?: number;
  /** Upper bound on a `window` approval, whatever the request asks (default 1440 minutes). */
  maxWindowMinutes?: number;
  /** Approver groups by rule name, added to those the policy rule names. */
  ruleGroups?: Record<string, string[]>;
  /** Groups used when neither the rule nor ruleGroups names any. Empty: every authenticated approver. */
  defaultGroups?: string[];
  /** A floor under the rule's minApprovals. */
  minApprovalsFloor?: number;
  requireApproveReason?: boolean;
  audit?: AuditSink;
  maskOptions?: MaskOptions;
  /** Called after a request is created (webhook notifications); never awaited. */
  onCreated?: (req: ApprovalRequest) => void;
  now?: () => Date;
  /** Expiry sweep period (default 1000 ms). */
  sweepMs?: number;
}

const MAX_OPERATION_BYTES = 64 * 1024;

export class ApprovalService {
  readonly changes = new Changes();
  private readonly now: () => Date;
  private sweeper?: NodeJS.Timeout;
  private sweeping?: Promise<void>;

  constructor(private readonly opts: ApprovalServiceOptions) {
    this.now = opts.now ?? (() => new Date());
  }

  get store(): ApprovalStore {
    return this.opts.store;
  }

  /** Starts the expiry sweeper and cross-replica change notifications. */
  async start(): Promise<void> {
    await this.opts.store.listen((id) => this.changes.changed(id));
    const period = this.opts.sweepMs ?? 1000;
    this.sweeper = setInterval(() => {
      this.sweep().catch((err) => log.error({ err: (err as Error).message }, 'approval expiry sweep failed'));
    }, period);
    this.sweeper.unref();
    await this.sweep();
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    await this.sweeping?.catch(() => undefined);
  }

  /** Expires what is due and refreshes the pending gauge. */
  sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      try {
        for (const r of await this.opts.store.expireDue(this.now())) {
          this.record(r, 'approval-expired', undefined, 'expired');
          this.changes.changed(r.id);
        }
        approvalPending.set((await this.opts.store.countByState()).pending);
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  // ---- sidecar side ------------------------------------------------------------------------

  /**
   * Creates a request, or returns the one that already covers this ask: a live approval in scope
   * (`once`: same identity, connection and operation bytes; `window`: same identity, rule and
   * fingerprint) or the same operation still pending (so a `defer` agent's retries do not pile up).
   */
  async create(who: SidecarPrincipal, input: CreateApprovalInput): Promise<{ request: ApprovalRequest; reused: boolean }> {
    validateCreate(input);
    const now = this.now();
    const requester: Requester = { pod: who.pod, serviceAccountSubject: who.subject };
    if (input.subject) requester.subject = input.subject;
    if (input.issuer) requester.issuer = input.issuer;
    const identityKey = identityKeyOf(requester);
    const binding = bindingOf(identityKey, input.protocol, input.connection, input.operation);
    const fingerprint = sha256(['fp', input.protocol, input.connection, input.fingerprint ?? input.operation].join('\0'));
    const existing = await this.opts.store.findReusable({ identityKey, binding, rule: input.rule, fingerprint, now });
    if (existing) {
      approvalRequests.inc({ result: 'reused' });
      return { request: existing, reused: true };
    }
    const scope = input.scope ?? 'once';
    const ttl = this.opts.ttlSeconds ?? 900;
    const request = await this.opts.store.insert({
      id: randomUUID(),
      state: 'pending',
      protocol: input.protocol,
      connection: input.connection,
      operation: maskText(input.operation, this.opts.maskOptions),
      rule: input.rule,
      ...(input.justification ? { justification: maskText(input.justification, this.opts.maskOptions) } : {}),
      requester,
      identityKey,
      mode: input.mode ?? 'wait',
      scope,
      windowMinutes: scope === 'window' ? Math.min(input.windowMinutes ?? 15, this.opts.maxWindowMinutes ?? 1440) : 0,
      approverGroups: [...new Set([...(input.approverGroups ?? []), ...(this.opts.ruleGroups?.[input.rule] ?? [])])],
      minApprovals: Math.max(input.minApprovals ?? 1, this.opts.minApprovalsFloor ?? 1),
      binding,
      fingerprint,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttl * 1000).toISOString(),
    });
    try {
      this.record(request, 'approval-created', undefined, 'created');
    } catch (err) {
      // Fail closed: a request that cannot be recorded must not be decidable.
      await this.opts.store.cancel(request.id, this.now()).catch(() => undefined);
      throw new ApprovalError('unavailable', `the audit trail is unavailable, so no approval can be requested: ${(err as Error).message}`);
    }
    approvalPending.inc();
    this.changes.changed(request.id);
    try {
      this.opts.onCreated?.(request);
    } catch (err) {
      log.warn({ err: (err as Error).message, id: request.id }, 'approval notification hook failed');
    }
    return { request, reused: false };
  }

  /** Reads one request: approvers read any, a sidecar only its own pod's. */
  async get(who: Principal, id: string): Promise<ApprovalRequest> {
    const r = await this.opts.store.get(id);
    if (!r) throw new ApprovalError('not-found', `no approval request ${id}`);
    if (who.kind === 'sidecar' && r.requester.pod.uid !== who.pod.uid) {
      throw new ApprovalError('forbidden', `approval request ${id} belongs to another pod; a sidecar may read only its own pod's requests`);
    }
    return r;
  }

  /**
   * Long-poll: returns as soon as the request is no longer pending, or after `waitMs` with it
   * still pending. A change wakes the waiter at once (in-process, or NOTIFY from another replica).
   */
  async wait(who: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<ApprovalRequest> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      // Subscribe before reading, so a change between the read and the wait is not missed.
      const ac = new AbortController();
      const stop = () => ac.abort();
      signal?.addEventListener('abort', stop, { once: true });
      const woke = this.changes.next(id, deadline - Date.now(), ac.signal);
      try {
        const r = await this.get(who, id);
        if (r.state !== 'pending' || Date.now() >= deadline || signal?.aborted) return r;
        await woke;
      } finally {
        ac.abort();
        signal?.removeEventListener('abort', stop);
      }
    }
  }

  async list(who: Principal, state?: ApprovalState, limit?: number): Promise<ApprovalRequest[]> {
    return this.opts.store.list({ state, limit, podUid: who.kind === 'sidecar' ? who.pod.uid : undefined });
  }

  /** A client that stopped waiting withdraws its request. */
  async cancel(who: SidecarPrincipal, id: string): Promise<ApprovalRequest> {
    await this.get(who, id);
    const t = await this.opts.store.cancel(id, this.now());
    if (!t.changed) {
      throw new ApprovalError('not-pending', `approval request ${id} is ${t.request?.state ?? 'gone'}, not pending; nothing to cancel`);
    }
    this.record(t.request, 'approval-cancelled', undefined, 'cancelled');
    approvalPending.dec();
    this.changes.changed(id);
    return t.request;
  }

  /** The sidecar is about to run the approved operation: consume a `once` approval, count a `window` use. */
  async use(who: SidecarPrincipal, id: string): Promise<ApprovalRequest> {
    await this.get(who, id);
    const t = await this.opts.store.use(id, this.now());
    if (!t.changed) {
      const st = t.request?.state ?? 'gone';
      throw new ApprovalError('not-approved', `approval request ${id} is ${st}${st === 'approved' ? ' but no longer valid' : ''}; it cannot be used`);
    }
    this.record(t.request, 'approval-used', undefined, 'used');
    this.changes.changed(id);
    return t.request;
  }

  // ---- approver side -----------------------------------------------------------------------

  async decide(who: ApproverPrincipal, id: string, verdict: 'approve' | 'deny', reason: string | undefined): Promise<ApprovalRequest> {
    const why = (reason ?? '').trim();
    if (verdict === 'deny' && !why) throw new ApprovalError('reason-required', 'a reason is required to deny a request (--reason)');
    if (verdict === 'approve' && !why && this.opts.requireApproveReason) {
      throw new ApprovalError('reason-required', 'this service requires a reason to approve a request (--reason)');
    }
    const now = this.now();
    let before: ApprovalRequest | undefined;
    let after: ApprovalRequest;
    try {
      after = await this.opts.store.decide(
        id,
        { approver: who.subject, verdict, reason: maskText(why, this.opts.maskOptions), at: now.toISOString() },
        (r) => {
          before = r;
          this.mayDecide(who, r, now);
        },
        (r) => {
          const o = this.outcome(r, now);
          // Recorded inside the transaction: a decision the audit trail cannot take is rolled back.
          const event = o.state === 'pending' ? 'approval-decision' : `approval-${o.state}`;
          this.audit({ ...r, state: o.state }, event, who.subject, { verdict, reason: why });
          return o;
        },
      );
    } catch (err) {
      if (err instanceof StoreNotFound) throw new ApprovalError('not-found', `no approval request ${id}`);
      if (err instanceof ApprovalError) throw err;
      if ((err as Error).name === 'AuditUnavailableError') {
        throw new ApprovalError('unavailable', `the audit trail is unavailable, so no decision can be recorded: ${(err as Error).message}`);
      }
      throw err;
    }
    if (after.state !== 'pending') {
      approvalRequests.inc({ result: after.state as RequestResult });
      approvalPending.dec();
      approvalDecisionSeconds.observe({ result: after.state }, (now.getTime() - Date.parse(before?.createdAt ?? after.createdAt)) / 1000);
    }
    this.changes.changed(id);
    return after;
  }

  private mayDecide(who: ApproverPrincipal, r: ApprovalRequest, now: Date): void {
    if (r.state !== 'pending') throw new ApprovalError('not-pending', `approval request ${r.id} is already ${r.state}`);
    if (Date.parse(r.expiresAt) <= now.getTime()) throw new ApprovalError('not-pending', `approval request ${r.id} expired at ${r.expiresAt}`);
    if (who.subject === r.requester.serviceAccountSubject || (r.requester.subject !== undefined && who.subject === r.requester.subject)) {
      throw new ApprovalError('self-approval', `${who.subject} made approval request ${r.id} and cannot decide it`);
    }
    const groups = this.groupsFor(r);
    if (groups.length > 0 && !who.groups.some((g) => groups.includes(g))) {
      throw new ApprovalError('not-an-approver', `${who.subject} is not in an approver group for rule ${r.rule} (needs one of: ${groups.join(', ')})`);
    }
    if (r.decisions.some((d) => d.approver === who.subject)) {
      throw new ApprovalError('already-decided', `${who.subject} already decided approval request ${r.id}; another approver must add theirs`);
    }
  }

  private groupsFor(r: ApprovalRequest): string[] {
    return r.approverGroups.length > 0 ? r.approverGroups : (this.opts.defaultGroups ?? []);
  }

  private outcome(r: ApprovalRequest, now: Date): { state: ApprovalState; validUntil?: Date } {
    if (r.decisions.some((d) => d.verdict === 'deny')) return { state: 'denied' };
    const approvals = r.decisions.filter((d) => d.verdict === 'approve').length;
    if (approvals < r.minApprovals) return { state: 'pending' };
    const validMs = r.scope === 'window' ? r.windowMinutes * 60_000 : (this.opts.onceValiditySeconds ?? this.opts.ttlSeconds ?? 900) * 1000;
    return { state: 'approved', validUntil: new Date(now.getTime() + validMs) };
  }

  // ---- recording ---------------------------------------------------------------------------

  private record(r: ApprovalRequest, event: string, approver: string | undefined, result: RequestResult): void {
    this.audit(r, event, approver);
    approvalRequests.inc({ result });
  }

  private audit(r: ApprovalRequest, event: string, approver: string | undefined, decision?: { verdict: string; reason: string }): void {
    if (!this.opts.audit) return;
    const at = this.now().toISOString();
    const ev: AuditEventInput = {
      auditID: randomUUID(),
      stage: 'ResponseComplete',
      protocol: 'approval',
      event,
      requestReceivedTimestamp: at,
      stageTimestamp: at,
      user: { username: r.requester.subject ?? r.requester.serviceAccountSubject },
      pod: r.requester.pod,
      connection: r.connection,
      statement: r.operation,
      decision: { action: 'approve', rule: r.rule, reason: decision ? `${decision.verdict}: ${decision.reason}` : `approval ${r.state}`, enforced: true },
      approval: { id: r.id, state: r.state, ...(approver ? { approver } : {}) },
      annotations: { 'agentgate.dev/approval-scope': r.scope, 'agentgate.dev/approval-protocol': r.protocol },
    };
    this.opts.audit.append(ev);
  }
}

export function identityKeyOf(r: Requester): string {
  return `${r.pod.namespace}/${r.pod.name}/${r.pod.uid}|${r.issuer ?? ''}|${r.subject ?? ''}`;
}

/** What a `once` approval is bound to: identity, connection and the exact operation bytes. */
export function bindingOf(identityKey: string, protocol: string, connection: string, operation: string): string {
  return sha256(['once', identityKey, protocol, connection, operation].join('\0'));
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export { serviceAccountSubject, FINAL_STATES };

function validateCreate(i: CreateApprovalInput): void {
  const bad = (m: string) => {
    throw new ApprovalError('bad-request', m);
  };
  if (typeof i !== 'object' || i === null || Array.isArray(i)) bad('the body must be a JSON object');
  if (i.protocol !== 'postgres' && i.protocol !== 'kubernetes') bad('protocol must be "postgres" or "kubernetes"');
  for (const k of ['connection', 'operation', 'rule'] as const) {
    if (typeof i[k] !== 'string' || i[k].length === 0) bad(`${k} must be a non-empty string`);
  }
  if (Buffer.byteLength(i.operation) > MAX_OPERATION_BYTES) bad(`operation is longer than ${MAX_OPERATION_BYTES} bytes`);
  for (const k of ['justification', 'fingerprint', 'subject', 'issuer'] as const) {
    if (i[k] !== undefined && typeof i[k] !== 'string') bad(`${k} must be a string`);
  }
  if (i.justification !== undefined && i.justification.length > 2000) bad('justification is longer than 2000 characters');
  if (i.mode !== undefined && i.mode !== 'wait' && i.mode !== 'defer') bad('mode must be "wait" or "defer"');
  if (i.scope !== undefined && i.scope !== 'once' && i.scope !== 'window') bad('scope must be "once" or "window"');
  if (i.windowMinutes !== undefined && (!Number.isInteger(i.windowMinutes) || i.windowMinutes < 1 || i.windowMinutes > 1440)) {
    bad('windowMinutes must be an integer from 1 to 1440');
  }
  if (i.minApprovals !== undefined && (!Number.isInteger(i.minApprovals) || i.minApprovals < 1 || i.minApprovals > 10)) {
    bad('minApprovals must be an integer from 1 to 10');
  }
  if (i.approverGroups !== undefined && (!Array.isArray(i.approverGroups) || !i.approverGroups.every((g) => typeof g === 'string' && g.length > 0))) {
    bad('approverGroups must be an array of non-empty strings');
  }
}
