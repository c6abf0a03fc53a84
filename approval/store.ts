// Storage of approval requests behind one interface, with one implementation in
// SQL over a tiny driver seam (SqlDb) that `pg` and PGlite both fill. Decisions are
// transactional: the request row is locked (SELECT … FOR UPDATE) while a decision
// is checked and recorded, so two replicas deciding the same request at once
// serialise, and the second sees the first's outcome: no double approval, no lost
// update. Other transitions are conditional UPDATEs (`… WHERE state = 'pending'`).

import { MIGRATIONS, MIGRATION_LOCK } from './migrations.js';
import type { ApprovalDecisionRecord, ApprovalRequest, ApprovalState, Requester } from './types.js';

export interface SqlQueryable {
  query(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
}

/** What a backend must provide: queries, transactions, and (optionally) cross-replica notifications. */
export interface SqlDb extends SqlQueryable {
  readonly kind: 'postgres' | 'pglite';
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>;
  /** Calls `onChange(id)` when any replica changes a request (LISTEN/NOTIFY). */
  listen?(onChange: (id: string) => void): Promise<void>;
  close(): Promise<void>;
}

export const NOTIFY_CHANNEL = 'agentgate_approval';

export interface ListFilter {
  state?: ApprovalState;
  podUid?: string;
  limit?: number;
}

export interface ReuseQuery {
  identityKey: string;
  binding: string;
  rule: string;
  fingerprint: string;
  now: Date;
}

export interface NewRequest extends Omit<ApprovalRequest, 'decisions' | 'uses' | 'decidedAt' | 'validUntil' | 'usedAt'> {
  identityKey: string;
}

export type Transition = { changed: true; request: ApprovalRequest } | { changed: false; request?: ApprovalRequest };

export interface ApprovalStore {
  readonly kind: 'postgres' | 'pglite';
  migrate(): Promise<void>;
  insert(req: NewRequest): Promise<ApprovalRequest>;
  get(id: string): Promise<ApprovalRequest | undefined>;
  list(filter: ListFilter): Promise<ApprovalRequest[]>;
  /** An existing request this one can reuse: a live approval in scope, else the same operation still pending. */
  findReusable(q: ReuseQuery): Promise<ApprovalRequest | undefined>;
  /**
   * Records one approver's verdict in a transaction holding the row lock. `check` sees the
   * locked request and throws to refuse; `next` computes the state after the decision.
   */
  decide(
    id: string,
    decision: ApprovalDecisionRecord,
    check: (req: ApprovalRequest) => void,
    next: (req: ApprovalRequest) => { state: ApprovalState; validUntil?: Date },
  ): Promise<ApprovalRequest>;
  /** pending → cancelled. */
  cancel(id: string, now: Date): Promise<Transition>;
  /** Consumes an approval: once → used; window → uses + 1 while valid. */
  use(id: string, now: Date): Promise<Transition>;
  /** Expires pending requests past their TTL and approvals past their validity; returns those changed. */
  expireDue(now: Date): Promise<ApprovalRequest[]>;
  countByState(): Promise<Record<ApprovalState, number>>;
  /** True when the database answers. */
  ping(): Promise<boolean>;
  /** Subscribes to changes made by any replica (PostgreSQL LISTEN); false when the backend has none. */
  listen(onChange: (id: string) => void): Promise<boolean>;
  close(): Promise<void>;
}

const COLUMNS = `id, state, protocol, connection, operation, rule, justification, requester, mode, scope, window_minutes,
  approver_groups, min_approvals, binding, fingerprint, created_at, expires_at, decided_at, valid_until, used_at, uses`;

function iso(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  return (v instanceof Date ? v : new Date(String(v))).toISOString();
}

function json<T>(v: unknown): T {
  return (typeof v === 'string' ? JSON.parse(v) : v) as T;
}

function rowToRequest(r: Record<string, unknown>, decisions: ApprovalDecisionRecord[]): ApprovalRequest {
  const out: ApprovalRequest = {
    id: String(r.id),
    state: r.state as ApprovalState,
    protocol: r.protocol as ApprovalRequest['protocol'],
    connection: String(r.connection),
    operation: String(r.operation),
    rule: String(r.rule),
    requester: json<Requester>(r.requester),
    mode: r.mode as ApprovalRequest['mode'],
    scope: r.scope as ApprovalRequest['scope'],
    windowMinutes: Number(r.window_minutes),
    approverGroups: json<string[]>(r.approver_groups),
    minApprovals: Number(r.min_approvals),
    binding: String(r.binding),
    fingerprint: String(r.fingerprint),
    createdAt: iso(r.created_at)!,
    expiresAt: iso(r.expires_at)!,
    uses: Number(r.uses),
    decisions,
  };
  if (r.justification !== null && r.justification !== undefined) out.justification = String(r.justification);
  const decidedAt = iso(r.decided_at);
  if (decidedAt) out.decidedAt = decidedAt;
  const validUntil = iso(r.valid_until);
  if (validUntil) out.validUntil = validUntil;
  const usedAt = iso(r.used_at);
  if (usedAt) out.usedAt = usedAt;
  return out;
}

export class SqlApprovalStore implements ApprovalStore {
  constructor(private readonly db: SqlDb) {}

  get kind() {
    return this.db.kind;
  }

  async migrate(): Promise<void> {
    await this.db.transaction(async (tx) => {
      // Replicas starting together: the first migrates, the others wait here, then find it done.
      await tx.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await tx.query(`create table if not exists agentgate_schema_migrations (
        version integer primary key, name text not null, applied_at timestamptz not null default now())`);
      const done = new Set((await tx.query('select version from agentgate_schema_migrations')).map((r) => Number(r.version)));
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        for (const stmt of m.sql.split(/;\s*(?:\n|$)/).map((s) => s.trim()).filter(Boolean)) await tx.query(stmt);
        await tx.query('insert into agentgate_schema_migrations (version, name) values ($1, $2)', [m.version, m.name]);
      }
    });
  }

  async insert(req: NewRequest): Promise<ApprovalRequest> {
    const rows = await this.db.transaction(async (tx) => {
      const r = await tx.query(
        `insert into agentgate_approval_requests (id, state, protocol, connection, operation, rule, justification, requester,
           identity_key, pod_uid, mode, scope, window_minutes, approver_groups, min_approvals, binding, fingerprint, created_at, expires_at)
         values ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9,$10,$11,$12,$13,$14::jsonb,$15,$16,$17,$18,$19) returning ${COLUMNS}`,
        [req.id, req.state, req.protocol, req.connection, req.operation, req.rule, req.justification ?? null, JSON.stringify(req.requester),
          req.identityKey, req.requester.pod.uid, req.mode, req.scope, req.windowMinutes, JSON.stringify(req.approverGroups), req.minApprovals,
          req.binding, req.fingerprint, req.createdAt, req.expiresAt],
      );
      await notify(tx, req.id);
      return r;
    });
    return rowToRequest(rows[0], []);
  }

  async get(id: string): Promise<ApprovalRequest | undefined> {
    return this.read(this.db, id, false);
  }

  private async read(q: SqlQueryable, id: string, lock: boolean): Promise<ApprovalRequest | undefined> {
    const rows = await q.query(`select ${COLUMNS} from agentgate_approval_requests where id = $1${lock ? ' for update' : ''}`, [id]);
    if (rows.length === 0) return undefined;
    return rowToRequest(rows[0], await this.decisionsOf(q, [id]).then((m) => m.get(id) ?? []));
  }

  private async decisionsOf(q: SqlQueryable, ids: string[]): Promise<Map<string, ApprovalDecisionRecord[]>> {
    const out = new Map<string, ApprovalDecisionRecord[]>();
    if (ids.length === 0) return out;
    const rows = await q.query(
      'select request_id, approver, verdict, reason, at from agentgate_approval_decisions where request_id = any($1::text[]) order by at, approver',
      [ids],
    );
    for (const r of rows) {
      const list = out.get(String(r.request_id)) ?? [];
      list.push({ approver: String(r.approver), verdict: r.verdict as 'approve' | 'deny', reason: String(r.reason), at: iso(r.at)! });
      out.set(String(r.request_id), list);
    }
    return out;
  }

  private async withDecisions(q: SqlQueryable, rows: Record<string, unknown>[]): Promise<ApprovalRequest[]> {
    const d = await this.decisionsOf(q, rows.map((r) => String(r.id)));
    return rows.map((r) => rowToRequest(r, d.get(String(r.id)) ?? []));
  }

  async list(filter: ListFilter): Promise<ApprovalRequest[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.state) where.push(`state = $${params.push(filter.state)}`);
    if (filter.podUid) where.push(`pod_uid = $${params.push(filter.podUid)}`);
    const limit = Math.min(Math.max(filter.limit ?? 500, 1), 5000);
    const rows = await this.db.query(
      `select ${COLUMNS} from agentgate_approval_requests ${where.length ? `where ${where.join(' and ')}` : ''}
       order by created_at desc, id limit ${limit}`,
      params,
    );
    return this.withDecisions(this.db, rows);
  }

  async findReusable(q: ReuseQuery): Promise<ApprovalRequest | undefined> {
    // Order of preference: an approval already granted in scope, then the same operation still pending.
    const rows = await this.db.query(
      `select ${COLUMNS} from agentgate_approval_requests
        where identity_key = $1 and (
              (state = 'approved' and valid_until > $5 and (
                  (scope = 'once' and binding = $2) or (scope = 'window' and rule = $3 and fingerprint = $4)))
           or (state = 'pending' and expires_at > $5 and binding = $2 and rule = $3))
        order by case state when 'approved' then 0 else 1 end, created_at desc limit 1`,
      [q.identityKey, q.binding, q.rule, q.fingerprint, q.now],
    );
    return (await this.withDecisions(this.db, rows))[0];
  }

  async decide(
    id: string,
    decision: ApprovalDecisionRecord,
    check: (req: ApprovalRequest) => void,
    next: (req: ApprovalRequest) => { state: ApprovalState; validUntil?: Date },
  ): Promise<ApprovalRequest> {
    return this.db.transaction(async (tx) => {
      const locked = await this.read(tx, id, true);
      if (!locked) throw new StoreNotFound(id);
      check(locked);
      await tx.query('insert into agentgate_approval_decisions (request_id, approver, verdict, reason, at) values ($1,$2,$3,$4,$5)', [
        id, decision.approver, decision.verdict, decision.reason, decision.at,
      ]);
      const withDecision: ApprovalRequest = { ...locked, decisions: [...locked.decisions, decision] };
      const n = next(withDecision);
      await notify(tx, id);
      if (n.state === locked.state) return withDecision;
      await tx.query('update agentgate_approval_requests set state = $2, decided_at = $3, valid_until = $4 where id = $1', [
        id, n.state, decision.at, n.validUntil ?? null,
      ]);
      // The row is locked: what was written is what is stored, no need to read it back.
      return { ...withDecision, state: n.state, decidedAt: decision.at, ...(n.validUntil ? { validUntil: n.validUntil.toISOString() } : {}) };
    });
  }

  async cancel(id: string, now: Date): Promise<Transition> {
    return this.conditional(id, `update agentgate_approval_requests set state = 'cancelled', decided_at = $2
      where id = $1 and state = 'pending' returning ${COLUMNS}`, [id, now]);
  }

  async use(id: string, now: Date): Promise<Transition> {
    return this.conditional(id, `update agentgate_approval_requests
        set state = case scope when 'once' then 'used' else state end, uses = uses + 1, used_at = $2
      where id = $1 and state = 'approved' and valid_until > $2 returning ${COLUMNS}`, [id, now]);
  }

  private async conditional(id: string, sql: string, params: unknown[]): Promise<Transition> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query(sql, params);
      if (rows.length === 0) return { changed: false, request: await this.read(tx, id, false) } as Transition;
      await notify(tx, id);
      return { changed: true, request: (await this.withDecisions(tx, rows))[0] } as Transition;
    });
  }

  async expireDue(now: Date): Promise<ApprovalRequest[]> {
    return this.db.transaction(async (tx) => {
      // Conditional, so replicas sweeping at the same moment expire each request exactly once.
      const rows = await tx.query(
        `update agentgate_approval_requests set state = 'expired', decided_at = coalesce(decided_at, $1)
          where (state = 'pending' and expires_at <= $1) or (state = 'approved' and valid_until <= $1)
          returning ${COLUMNS}`,
        [now],
      );
      for (const r of rows) await notify(tx, String(r.id));
      return this.withDecisions(tx, rows);
    });
  }

  async countByState(): Promise<Record<ApprovalState, number>> {
    const out = { pending: 0, approved: 0, denied: 0, expired: 0, cancelled: 0, used: 0 } as Record<ApprovalState, number>;
    for (const r of await this.db.query('select state, count(*)::int as n from agentgate_approval_requests group by state')) {
      out[r.state as ApprovalState] = Number(r.n);
    }
    return out;
  }

  async ping(): Promise<boolean> {
    try {
      await this.db.query('select 1');
      return true;
    } catch {
      return false;
    }
  }

  async listen(onChange: (id: string) => void): Promise<boolean> {
    if (!this.db.listen) return false;
    await this.db.listen(onChange);
    return true;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

export class StoreNotFound extends Error {
  override name = 'StoreNotFound';
  constructor(readonly id: string) {
    super(`no approval request ${id}`);
  }
}

async function notify(tx: SqlQueryable, id: string): Promise<void> {
  // Delivered at commit, to every replica listening (PostgreSQL); harmless on PGlite.
  await tx.query('select pg_notify($1, $2)', [NOTIFY_CHANNEL, id]);
}
