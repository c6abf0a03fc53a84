// The sidecar's client of the approval service. Every failure is fail-closed: the
// caller gets an ApprovalUnavailable with a sentence to show the agent, and must
// refuse the operation.
//
//   const client = new ApprovalClient({ url: 'http://agentgate-approval:8080', tokenFile: '/var/run/secrets/agentgate/token' });
//
//   // mode: wait — create, then hold the operation until decided (or waitSeconds pass)
//   const req = await client.create({ protocol: 'postgres', connection: 'payments', operation: sql, rule: decision.rule,
//                                     ...specToInput(decision.approval!) });
//   if (req.state === 'approved') await client.use(req.id);              // an approval in scope already existed
//   const final = await client.waitForDecision(req.id, { timeoutMs: spec.waitSeconds * 1000, signal });
//   //   final.state: 'approved' → client.use(final.id), then run the operation
//   //                'denied' | 'expired' | 'cancelled' → refuse, naming final.id and final.decisions
//   //                'pending' (timeout) → client.cancel(final.id), refuse
//   // If the agent disconnects while waiting, abort `signal` and call client.cancel(id).
//
//   // mode: defer — create, and refuse at once unless the answer is already an approval
//   const r = await client.create({ ...input, mode: 'defer' });
//   if (r.state === 'approved') { await client.use(r.id); run(); } else refuse(`approval ${r.id} is ${r.state}`);
//   // the agent's retry calls create() again: the service returns the same request (pending or approved).
//
// Methods: create(input) → ApprovalRequest (new: pending; or the reused one), get(id), waitForDecision(id, opts),
// cancel(id), use(id) (consumes a `once` approval; throws ApprovalRefused when it is no longer usable).
// Errors: ApprovalUnavailable (unreachable, slow, 5xx, unauthenticated, nonsense) and
// ApprovalRefused (the service answered with a definite refusal, e.g. not-approved) — deny on both.
// `howToApprove(id)` gives the sentence to put in a NoticeResponse or a Status message.

import { readFileSync } from 'node:fs';
import type { ApprovalSpec } from '../core/policy/types.js';
import type { ApprovalRequest, CreateApprovalInput } from './types.js';
import { APPROVAL_STATES } from './types.js';

export interface ApprovalClientOptions {
  /** Base URL of the approval service, e.g. http://agentgate-approval.agentgate:8080. */
  url: string;
  /** The sidecar's projected token (audience agentgate); re-read on every call, since the kubelet rotates it. */
  tokenFile?: string;
  token?: string;
  /** Per-call timeout for non-waiting calls (default 5000 ms). */
  timeoutMs?: number;
  /** Longest single long-poll (default 30 s; the service caps it too). */
  pollMs?: number;
}

/** The approval service cannot give a trustworthy answer: deny. */
export class ApprovalUnavailable extends Error {
  override name = 'ApprovalUnavailable';
}

/** The service answered with a definite refusal (code from the API, e.g. `not-approved`). */
export class ApprovalRefused extends Error {
  override name = 'ApprovalRefused';
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The policy rule's approval block as create() input. */
export function specToInput(spec: ApprovalSpec): Pick<CreateApprovalInput, 'mode' | 'scope' | 'windowMinutes' | 'approverGroups' | 'minApprovals'> {
  return {
    mode: spec.mode,
    scope: spec.scope,
    ...(spec.scope === 'window' ? { windowMinutes: spec.windowMinutes } : {}),
    approverGroups: [...spec.approverGroups],
    minApprovals: spec.minApprovals,
  };
}

/** The sentence a held or refused operation shows its client. */
export function howToApprove(id: string, serverUrl?: string): string {
  return `approval ${id} is needed: an approver runs \`agentgate approvals approve ${id}${serverUrl ? ` --server ${serverUrl}` : ''}\``;
}

export class ApprovalClient {
  private readonly base: string;
  constructor(private readonly opts: ApprovalClientOptions) {
    this.base = opts.url.replace(/\/+$/, '');
  }

  create(input: CreateApprovalInput): Promise<ApprovalRequest> {
    return this.call('POST', '/v1/approvals', input);
  }

  get(id: string): Promise<ApprovalRequest> {
    return this.call('GET', `/v1/approvals/${encodeURIComponent(id)}`);
  }

  cancel(id: string): Promise<ApprovalRequest> {
    return this.call('POST', `/v1/approvals/${encodeURIComponent(id)}/cancel`);
  }

  use(id: string): Promise<ApprovalRequest> {
    return this.call('POST', `/v1/approvals/${encodeURIComponent(id)}/use`);
  }

  /**
   * Long-polls until the request leaves `pending` or `timeoutMs` passes (then returns it still
   * pending). Aborting `signal` stops waiting and returns the last state seen.
   */
  async waitForDecision(id: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<ApprovalRequest> {
    const deadline = Date.now() + opts.timeoutMs;
    let last: ApprovalRequest | undefined;
    for (;;) {
      const left = deadline - Date.now();
      if (last && (last.state !== 'pending' || left <= 0 || opts.signal?.aborted)) return last;
      const poll = Math.max(0, Math.min(left, this.opts.pollMs ?? 30_000));
      try {
        last = await this.call('GET', `/v1/approvals/${encodeURIComponent(id)}?wait=${poll}ms`, undefined, poll + (this.opts.timeoutMs ?? 5000), opts.signal);
      } catch (err) {
        if (opts.signal?.aborted && last) return last;
        throw err;
      }
      if (last.id !== id) throw new ApprovalUnavailable(`the approval service answered for ${last.id} when asked for ${id}`);
    }
  }

  private token(): string {
    if (this.opts.token) return this.opts.token;
    if (!this.opts.tokenFile) throw new ApprovalUnavailable('no token for the approval service (tokenFile)');
    try {
      return readFileSync(this.opts.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new ApprovalUnavailable(`cannot read the approval service token ${this.opts.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  private async call(method: string, path: string, body?: unknown, timeoutMs = this.opts.timeoutMs ?? 5000, signal?: AbortSignal): Promise<ApprovalRequest> {
    const where = `the approval service at ${this.base}`;
    const timeout = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token()}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
      });
    } catch (err) {
      if (err instanceof ApprovalUnavailable) throw err;
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why = timeout.aborted ? `did not answer within ${timeoutMs} ms` : signal?.aborted ? 'the wait was abandoned' : `is unreachable (${e.cause?.code ?? e.cause?.message ?? e.message})`;
      throw new ApprovalUnavailable(`${where} ${why}; the operation is denied`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new ApprovalUnavailable(`${where} broke off its answer (${(err as Error).message}); the operation is denied`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ApprovalUnavailable(`${where} answered HTTP ${res.status} with something that is not JSON; the operation is denied`);
    }
    if (!res.ok) {
      const e = json as { code?: unknown; message?: unknown };
      const msg = typeof e?.message === 'string' ? e.message : `HTTP ${res.status}`;
      const code = typeof e?.code === 'string' ? e.code : 'unknown';
      if (res.status >= 500 || res.status === 401) throw new ApprovalUnavailable(`${where} refused to answer: ${msg}; the operation is denied`);
      throw new ApprovalRefused(code, msg);
    }
    if (!isApprovalRequest(json)) throw new ApprovalUnavailable(`${where} answered with a body that is not an approval request; the operation is denied`);
    return json;
  }
}

function isApprovalRequest(v: unknown): v is ApprovalRequest {
  const r = v as ApprovalRequest;
  return (
    typeof v === 'object' && v !== null && typeof r.id === 'string' && r.id.length > 0 &&
    APPROVAL_STATES.includes(r.state) && typeof r.scope === 'string' && Array.isArray(r.decisions)
  );
}
