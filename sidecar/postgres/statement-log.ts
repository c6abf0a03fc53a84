// What a PostgreSQL session records: one audit event per statement decided (with its
// decision, rows, bytes, duration and SQLSTATE) and the session's own events, plus the
// per-statement metrics. Events are appended once the response is on its way, off the
// statement's latency path; an append that fails keeps them queued and makes `usable()`
// false, so the session refuses statements until the trail can be written again.

import crypto from 'node:crypto';
import type { AuditEventInput } from '../../core/audit/types.js';
import type { PgRequest, Policy } from '../../core/policy/types.js';
import type { Verdict } from './decide.js';
import type { ApprovalRecord } from './approval-gate.js';
import type { SessionContext } from './session.js';

export interface Unit {
  sql: string;
  verdict: Verdict;
  /** performance.now() at arrival (a double: no BigInt per statement). */
  startT: number;
  startMs: number;
  rows: number;
  sqlstate?: string;
  bytesIn0: number;
  bytesOut0: number;
  /** Multi-statement query: per statement, its rows, end time and error, in order. */
  parts?: { rows: number; endT?: number; sqlstate?: string }[];
  part: number;
  approval?: ApprovalRecord;
}

export class StatementLog {
  /** Bytes read from the client and from the server so far. */
  bytesIn = 0;
  bytesOut = 0;
  private readonly openedMs = Date.now();

  constructor(private readonly ctx: SessionContext) {}

  /** Events waiting to be appended. */
  get queued(): number {
    return this.auditQueue.length;
  }

  /** The session ended: the rest of the byte counts, its last event, and what could not be written. */
  end(reason: string): void {
    this.ctx.metrics.bytesIn.inc(this.bytesIn - this.flushedIn);
    this.ctx.metrics.bytesOut.inc(this.bytesOut - this.flushedOut);
    this.flushedIn = this.bytesIn;
    this.flushedOut = this.bytesOut;
    this.event('connection-end', { detail: reason });
    if (this.auditQueue.length) {
      this.ctx.log.error({ connection: this.ctx.connection, session: this.ctx.sessionId, lost: this.auditQueue.length }, 'audit events of a closed session could not be written');
      this.auditQueue.length = 0;
    }
  }


  private flushedIn = 0;
  private flushedOut = 0;

  unit(sql: string, verdict: Verdict): Unit {
    const parts = verdict.statements?.map(() => ({ rows: 0 }));
    return { sql, verdict, startT: performance.now(), startMs: Date.now(), rows: 0, bytesIn0: this.bytesIn, bytesOut0: this.bytesOut, parts, part: 0 };
  }

  count(v: Verdict): void {
    const a = v.decision.action;
    (a === 'allow' ? this.ctx.metrics.allowed : a === 'deny' ? this.ctx.metrics.denied : this.ctx.metrics.approve).inc();
  }

  finish(u: Unit, sqlstate: string | undefined): void {
    const now = performance.now();
    const seconds = (now - u.startT) / 1000;
    this.ctx.metrics.duration.observe(seconds);
    // Bytes are added to the counters per statement, not per chunk.
    this.ctx.metrics.bytesIn.inc(this.bytesIn - this.flushedIn);
    this.ctx.metrics.bytesOut.inc(this.bytesOut - this.flushedOut);
    this.flushedIn = this.bytesIn;
    this.flushedOut = this.bytesOut;
    const bytes = { in: this.bytesIn - u.bytesIn0, out: this.bytesOut - u.bytesOut0 };
    const statements = u.verdict.statements;
    if (!statements || !u.parts) {
      this.auditStatement(u, u.sql, u.verdict.operations, u.rows, seconds * 1000, sqlstate, bytes);
      return;
    }
    // One event per statement of a multi-statement query; bytes go with the first.
    let prev = u.startT;
    for (let i = 0; i < statements.length; i++) {
      const part = u.parts[i];
      const end = part.endT ?? now;
      const ms = part.endT !== undefined || i === 0 ? end - prev : 0;
      if (part.endT !== undefined) prev = part.endT;
      this.auditStatement(u, statements[i].text, statements[i].operations, part.rows, ms, part.sqlstate ?? (part.endT !== undefined ? undefined : sqlstate), i === 0 ? bytes : undefined);
    }
  }

  private auditStatement(
    u: Unit,
    text: string,
    ops: Verdict['operations'],
    rows: number,
    durationMs: number,
    sqlstate: string | undefined,
    bytes: { in: number; out: number } | undefined,
  ): void {
    const { kinds, tables } = summarize(ops);
    const d = u.verdict.decision;
    const id = this.ctx.identity;
    // Queued, and appended once the response is on its way to the client: the
    // audit write is not on the statement's latency path.
    this.auditQueue.push({
      auditID: crypto.randomUUID(),
      stage: 'ResponseComplete',
      verb: kinds[0] ?? 'empty',
      user: (this.auditUser ??= { username: id.subject, groups: id.groups }),
      sourceIPs: (this.auditSource ??= [this.ctx.clientAddress]),
      userAgent: this.ctx.applicationName,
      requestReceivedTimestamp: new Date(u.startMs).toISOString(),
      stageTimestamp: new Date().toISOString(),
      protocol: 'postgres',
      connection: this.ctx.connection,
      statement: this.maskStatement(text),
      statementKinds: kinds,
      tables,
      decision: { action: d.action, rule: d.rule, reason: d.reason, enforced: d.enforced },
      approval: u.approval,
      pod: id.pod,
      session: this.ctx.sessionId,
      rows,
      bytes,
      durationMs,
      sqlstate,
    });
  }

  private readonly auditQueue: AuditEventInput[] = [];
  /** An append failed: the events not written stay queued, and statements are refused until they are. */
  private auditFailing = false;
  // Parts of every statement event that do not change within a session (the writer only serializes them).
  private auditUser: { username: string; groups: string[] } | undefined;
  private auditSource: string[] | undefined;
  /** The last statement text masked for audit, and under which policy (its masking options). */
  private maskedFor: { text: string; policy: Policy; masked: string } | undefined;

  /** Statement text as audited (literal PANs masked); a prepared statement repeats it, so the last one is kept. */
  private maskStatement(text: string): string {
    const policy = this.ctx.policy.current();
    const m = this.maskedFor;
    if (m !== undefined && m.text === text && m.policy === policy) return m.masked;
    const masked = this.ctx.masker.maskText(text);
    this.maskedFor = { text, policy, masked };
    return masked;
  }

  /**
   * Appends the queued events in order. An append that throws (the writer refuses: a
   * backlog, a full disk) keeps it and the rest queued for the next try; until they are
   * written, statements are refused. Returns true when the queue is empty.
   */
  flush(): boolean {
    const q = this.auditQueue;
    let i = 0;
    try {
      for (; i < q.length; i++) this.ctx.audit.append(q[i]);
    } catch (err) {
      q.splice(0, i);
      if (q.length > MAX_UNWRITTEN_AUDIT) {
        this.ctx.log.error({ connection: this.ctx.connection, session: this.ctx.sessionId, lost: q.length - MAX_UNWRITTEN_AUDIT }, 'audit events dropped: the audit trail stayed unwritable');
        q.splice(0, q.length - MAX_UNWRITTEN_AUDIT);
      }
      if (!this.auditFailing) this.ctx.log.error({ connection: this.ctx.connection, err: (err as Error).message }, 'audit append failed; refusing statements until the audit trail can be written');
      this.auditFailing = true;
      return false;
    }
    q.length = 0;
    if (this.auditFailing) this.ctx.log.info({ connection: this.ctx.connection }, 'audit trail writable again');
    this.auditFailing = false;
    return true;
  }

  /** Whether a statement may run now: the sink is healthy and this session's earlier events are written. */
  usable(): boolean {
    if (!this.ctx.auditHealthy()) return false;
    return !this.auditFailing || this.flush();
  }

  event(event: string, extra: { sqlstate?: string; detail?: string } = {}): void {
    const id = this.ctx.identity;
    const now = new Date().toISOString();
    this.auditQueue.push({
      auditID: crypto.randomUUID(),
      stage: 'ResponseComplete',
      verb: event,
      user: { username: id.subject, groups: id.groups },
      sourceIPs: [this.ctx.clientAddress],
      userAgent: this.ctx.applicationName,
      requestReceivedTimestamp: event === 'connection-end' ? new Date(this.openedMs).toISOString() : now,
      stageTimestamp: now,
      protocol: 'postgres',
      connection: this.ctx.connection,
      pod: id.pod,
      session: this.ctx.sessionId,
      event,
      sqlstate: extra.sqlstate,
      responseStatus: extra.detail ? { message: this.ctx.masker.maskText(extra.detail) } : undefined,
      bytes: event === 'connection-end' ? { in: this.bytesIn, out: this.bytesOut } : undefined,
      durationMs: event === 'connection-end' ? Date.now() - this.openedMs : undefined,
    });
    this.flush();
  }
}

/** Events kept for a retry while the audit trail is unwritable (statements are refused meanwhile, so few arrive). */
const MAX_UNWRITTEN_AUDIT = 1000;

/** Statement kinds and tables of a classification, for audit; classifications are cached, so is this. */
const SUMMARIES = new WeakMap<readonly PgRequest[], { kinds: string[]; tables: string[] }>();
function summarize(ops: readonly PgRequest[]): { kinds: string[]; tables: string[] } {
  let s = SUMMARIES.get(ops);
  if (s) return s;
  const kinds: string[] = [];
  const tables: string[] = [];
  for (const op of ops) {
    if (!kinds.includes(op.statement)) kinds.push(op.statement);
    for (const t of op.tables) if (!tables.includes(t)) tables.push(t);
  }
  s = { kinds, tables };
  SUMMARIES.set(ops, s);
  return s;
}
