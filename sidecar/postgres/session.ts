// One client connection after startup: relays messages both ways, decides each
// statement before it reaches the server, masks what comes back, and records every
// statement. Runs synchronously per chunk: no awaits on the hot path.
//
// What the server holds (prepared statements, portals, the answers it owes, whether it
// is skipping to Sync after an error) is modelled by the Tracker from the server's own
// answers; this file reads client messages against that model and refuses any whose
// outcome it cannot predict (a name SQL made, a name an unanswered batch may change:
// those wait until the server has answered).
//
// How a refusal reaches both sides: the refused message is replaced by one that fails
// on the server with a marker (`agentgate_denied_<nonce>_<n>`): a Query or Parse of the
// marker as text (a syntax error exactly where the real statement would have failed, so
// a transaction block is aborted and the unnamed statement dropped as they would be), or
// a Describe of a statement named by the marker (an error with no other effect, in place
// of a Bind, Describe or Execute). The server's own error then skips the rest of the
// pipeline to Sync as PostgreSQL would; the proxy recognises the marker in that
// ErrorResponse and replaces it with its own error. Responses stay in server order.
//
// Pauses: while a statement waits for a human (approval hold) or for the server to
// answer earlier batches (settings barrier, names an unanswered batch may change, the
// proxy's own Describe of a binary result), client frames are queued, as sent, and
// replayed in order on resume. Reading goes on, so a client that leaves is noticed.

import type net from 'node:net';
import crypto from 'node:crypto';
import type { Identity } from '../../core/identity.js';
import type { AuditSink } from '../../core/audit/types.js';
import type { PolicySource } from '../../core/policy/types.js';
import type { Logger } from '../../core/log.js';
import {
  B,
  BudgetSpent,
  CLIENT_BUFFERS,
  F,
  FLUSH,
  FrameReader,
  ProtocolError,
  TERMINATE,
  decodeBind,
  decodeParse,
  decodeTarget,
  describeBindParams,
  describeMessage,
  errorField,
  errorResponse,
  fieldsMessage,
  isFrontendType,
  parseFields,
  parseMessage,
  queryMessage,
  readCString,
} from './wire.js';
import type { ByteBudget, PgErrorFields } from './wire.js';
import { decideOperations, decideSql, refusal } from './decide.js';
import { AUDIT_DOWN, FUNCTION_CALL, SETTINGS_IN_DOUBT, cannotMask, noPortal, noStatement, statementExists, statementMayExist } from './refusals.js';
import { Outbox } from './outbox.js';
import { sessionParameterProblem } from '../../core/sql/index.js';
import type { SqlClassifier, Verdict } from './decide.js';
import { UNKNOWN_ROW, maskCopyData, maskDataRow, maskFieldsMessage, maskNotification, parseRowDescription, planRow, planUnknown } from './result-mask.js';
import { derivedColumns } from './provenance.js';
import { copyOutMasker } from './copy-mask.js';
import type { CopyOutMasker } from './copy-mask.js';
import type { RowPlan, TextMasker } from './result-mask.js';
import type { BoundMetrics } from './metrics.js';
import type { AbortCause, ApprovalOutcome, ApprovalRecord, PgApprovalGate } from './approval-gate.js';
import { StatementLog } from './statement-log.js';
import type { Unit } from './statement-log.js';
import { ABSENT, Desync, K, Tracker, UNKNOWN, WAIT, namespaceEffects } from './tracker.js';
import type { Expect, Portal, Stmt } from './tracker.js';

export interface SessionContext {
  connection: string;
  identity: Identity;
  sessionId: string;
  clientAddress: string;
  applicationName?: string;
  policy: PolicySource;
  classifier: SqlClassifier;
  masker: TextMasker;
  audit: AuditSink;
  metrics: BoundMetrics;
  log: Logger;
  /** `tableOid:column` of `spec.masking.columns`, resolved at connection start. */
  starred: ReadonlySet<string>;
  maxMessageBytes: number;
  /** False while the audit sink cannot record: statements are refused (nothing runs unrecorded). */
  auditHealthy(): boolean;
  /** Sends the server's own CancelRequest on a new connection. */
  cancelUpstream(): void;
  /** The approval service; without it `approve` decisions are refused (fail closed). */
  approvals?: PgApprovalGate;
  /** The server's ParameterStatus values at startup (role/database settings included). */
  serverParameters: readonly (readonly [string, string])[];
  /** The budget for client frames buffered across chunks (default: the process-wide one). */
  clientBuffers?: ByteBudget;
}


type Entry = Expect<Unit>;

interface Denial {
  marker: string;
  error: PgErrorFields;
}

/** A client frame kept, as sent, while the session is paused. */
type QueuedFrame = { type: number; frame: Buffer };

/**
 * A Query or Execute waiting for a human decision. Nothing of it has reached the server.
 */
interface Hold {
  k: K.Query | K.Execute;
  /** What the approver sees: the statement, and for an Execute the bound values. */
  sql: string;
  /** The statement text as audited. */
  stmtSql: string;
  verdict: Verdict;
  frame: Buffer;
  portalName: string;
  portal?: Portal;
  abort: AbortController;
  since: number;
}

/** Client frames queued until `until` is answered by the server, or until `hold` is decided. */
interface Pause {
  queue: QueuedFrame[];
  bytes: number;
  until?: Entry;
  hold?: Hold;
}

export class Session {
  private readonly clientReader: FrameReader;
  private readonly serverReader = new FrameReader(0x7fffffff);
  private readonly tracker = new Tracker<Unit>();
  private readonly record: StatementLog;
  private denials: Denial[] = [];
  private readonly nonce = crypto.randomBytes(6).toString('hex');
  private markerSeq = 0;
  /** Row shape for DataRows in a simple query (set by each RowDescription). */
  private queryPlan: RowPlan = UNKNOWN_ROW;
  private inCopyOut = false;
  private copyMask: CopyOutMasker | undefined;
  /** The COPY OUT in progress is text or CSV (not binary). */
  private copyText = true;
  private draining = false;
  private closed = false;
  private paused: Pause | undefined;
  /** The server sent its own FATAL: it closes next, and the client has been told why. */
  private serverFatal = false;
  /**
   * Set once the server reports a setting under which the classifier reads SQL text
   * differently (sessionParameterProblem): from then on every statement is refused.
   * Sticky, since statements already forwarded may have run under it.
   */
  private unreadable: Verdict | undefined;
  /** An Execute was sent since the client's last Sync/Query (its settings are reported only at ReadyForQuery). */
  private runInOpenBatch = false;
  /** Called once when both sockets are gone. */
  onClose: (() => void) | undefined;

  constructor(
    private readonly client: net.Socket,
    private readonly server: net.Socket,
    private readonly ctx: SessionContext,
  ) {
    this.clientReader = new FrameReader(ctx.maxMessageBytes, isFrontendType, ctx.clientBuffers ?? CLIENT_BUFFERS);
    this.record = new StatementLog(ctx);
  }

  start(clientRest: Buffer, serverRest: Buffer): void {
    this.client.on('data', (c: Buffer) => this.onClientData(c));
    this.server.on('data', (c: Buffer) => this.onServerData(c));
    this.client.on('end', () => this.close('client closed the connection'));
    this.client.on('error', (e) => this.close(`client connection error: ${e.message}`));
    this.server.on('end', () => this.serverGone('server closed the connection'));
    this.server.on('error', (e) => this.serverGone(`server connection error: ${e.message}`));
    this.client.on('close', () => this.close('client connection closed'));
    this.server.on('close', () => this.serverGone('server connection closed'));
    this.record.event('connection-start');
    for (const [name, value] of this.ctx.serverParameters) this.noteParameter(name, value);
    if (serverRest.length) this.onServerData(serverRest);
    if (clientRest.length) this.onClientData(clientRest);
    this.client.resume();
    this.server.resume();
  }

  /** True while a statement is in flight (sent and not finished, or held for approval). */
  get busy(): boolean {
    return this.tracker.pending.length > 0 || this.paused?.hold !== undefined;
  }

  /**
   * CancelRequest: a statement held for approval is refused with 57014 and its request
   * cancelled. Returns true when the server is also working on something (then the
   * listener sends the server's own cancel too).
   */
  cancel(): boolean {
    this.paused?.hold?.abort.abort('cancel' satisfies AbortCause);
    return this.tracker.pending.length > 0;
  }

  /** SIGTERM: close now if idle, else after the statement in flight completes. */
  drain(): void {
    this.draining = true;
    if (!this.busy) this.shutdownIdle();
  }

  /** Transaction status of the last ReadyForQuery ('I', 'T' or 'E'). */
  get transactionStatus(): string {
    return String.fromCharCode(this.tracker.status);
  }

  // --- client → server -----------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    if (this.closed) return;
    this.record.bytesIn += chunk.length;
    const ob = this.toServer;
    ob.reset();
    let data: Buffer;
    try {
      data = this.clientReader.push(chunk, this.onClientFrame);
    } catch (err) {
      return this.clientFailed(err);
    }
    if (ob.finish(data) && !this.closed) this.send(this.server, this.client, ob.out);
    ob.out.length = 0;
    if (this.record.queued) this.record.flush();
  }

  private readonly toServer = new Outbox();
  private readonly toClient = new Outbox();
  // Bound once: FrameReader calls these per frame, with no closure allocated per chunk.
  private readonly onClientFrame = (type: number, buf: Buffer, start: number, end: number): void => {
    this.toServer.frame(this.paused ? this.enqueue(type, buf, start, end) : this.onClientMessage(type, buf, start, end), buf, start, end);
  };
  private readonly onServerFrame = (type: number, buf: Buffer, start: number, end: number): void => {
    this.toClient.frame(this.onServerMessage(type, buf, start, end), buf, start, end);
  };

  /** Client bytes are untrusted: whatever they break ends this connection, never the process. */
  private clientFailed(err: unknown): void {
    if (err instanceof BudgetSpent) {
      this.ctx.log.warn({ connection: this.ctx.connection, session: this.ctx.sessionId, detail: err.message }, 'client message refused: buffer budget spent');
      this.record.event('buffer-budget-spent', { sqlstate: '53200', detail: err.message });
      return this.fatal({ severity: 'FATAL', code: '53200', message: `agentgate: ${err.message}` });
    }
    if (!(err instanceof ProtocolError)) this.ctx.log.error({ err: (err as Error).stack }, 'unexpected error handling a client message');
    this.protocolViolation(err instanceof ProtocolError ? err.message : `malformed message (${(err as Error).message})`);
  }

  /** undefined: forward as is; Buffer: forward this instead; null: drop. */
  private onClientMessage(type: number, buf: Buffer, start: number, end: number): Buffer | null | undefined {
    const t = this.tracker;
    if (t.skipping) return this.whileSkipping(type);
    const ranBefore = this.runInOpenBatch;
    if (type === F.Execute) this.runInOpenBatch = true;
    else if (type === F.Sync || type === F.Query) this.runInOpenBatch = false;
    switch (type) {
      case F.Query: {
        const [sql, next] = readCString(buf, start + 5, end);
        if (next !== end) throw new ProtocolError('invalid Query message: trailing bytes');
        const settings = this.settingsInDoubt(sql, ranBefore);
        if (settings === 'wait') return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
        const verdict = settings === 'refuse' ? SETTINGS_IN_DOUBT : this.decide(sql);
        if (this.needsApproval(verdict)) return this.startHold({ k: K.Query, sql, stmtSql: sql, verdict, frame: Buffer.from(buf.subarray(start, end)), portalName: '' });
        return this.admitQuery(sql, verdict);
      }
      case F.Parse:
        return this.onParse(type, buf, start, end, ranBefore);
      case F.Bind:
        return this.onBind(type, buf, start, end);
      case F.Describe: {
        const { what, name } = decodeTarget(buf, start, end, 'Describe');
        if (what === 0x53) {
          const s = t.statement(name);
          if (s === WAIT) return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
          if (typeof s === 'string') return this.refuseMessage(noStatement(name, s), `<Describe of prepared statement "${name}">`);
          t.push({ k: K.DescribeStmt, name, stmt: s, effects: 0 });
        } else {
          const p = t.portal(name);
          if (p === WAIT) return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
          if (typeof p === 'string') return this.refuseMessage(noPortal(name, p), `<Describe of portal "${name}">`);
          t.push({ k: K.DescribePortal, name, portal: p, effects: 0 });
        }
        return undefined;
      }
      case F.Execute:
        return this.onExecute(type, buf, start, end);
      case F.Sync:
        t.push({ k: K.Sync, name: '', effects: 0 });
        return undefined;
      case F.Close: {
        const { what, name } = decodeTarget(buf, start, end, 'Close');
        t.push({ k: what === 0x53 ? K.CloseStmt : K.ClosePortal, name, effects: 0 });
        return undefined;
      }
      case F.FunctionCall: {
        // The fast-path interface calls any function by OID, out of sight of the SQL
        // classifier (lo_export, pg_read_file, …): refused.
        const verdict = FUNCTION_CALL;
        const unit = this.record.unit('<fast-path function call>', verdict);
        this.record.count(verdict);
        t.push({ k: K.Function, name: '', unit, effects: 0 });
        return queryMessage(this.refuse(verdict.error!));
      }
      case F.Terminate:
        this.close('client terminated the session');
        return null;
      default:
        // Flush, CopyData, CopyDone, CopyFail, and a stray password message (the server answers it).
        return undefined;
    }
  }

  /** The server discards every message up to Sync: they run nothing and get no answer. */
  private whileSkipping(type: number): Buffer | null | undefined {
    if (type === F.Sync) {
      this.runInOpenBatch = false;
      this.tracker.synced();
      this.tracker.push({ k: K.Sync, name: '', effects: 0 });
    } else if (type === F.Terminate) {
      this.close('client terminated the session');
      return null;
    }
    return undefined;
  }

  private onParse(type: number, buf: Buffer, start: number, end: number, ranBefore: boolean): Buffer | null | undefined {
    const t = this.tracker;
    const { name, sql } = decodeParse(buf, start, end);
    // The unnamed statement is replaced by any Parse; a named one must not exist (the server would keep the old one).
    const existing = name === '' ? ABSENT : t.statement(name);
    if (existing === WAIT) return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
    let verdict: Verdict;
    if (existing !== ABSENT) verdict = existing === UNKNOWN ? statementMayExist(name) : statementExists(name);
    else {
      const settings = this.settingsInDoubt(sql, ranBefore);
      if (settings === 'wait') return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
      verdict = settings === 'refuse' ? SETTINGS_IN_DOUBT : this.decide(sql);
    }
    // A statement that needs approval is prepared (that runs nothing); each Execute of it is held.
    if (verdict.forward || this.needsApproval(verdict)) {
      t.push({ k: K.Parse, name, stmt: { sql, verdict, effects: namespaceEffects(sql) }, effects: 0 });
      return undefined;
    }
    // A refused Parse is recorded now: no Execute of it will ever run.
    this.record.count(verdict);
    const unit = this.record.unit(sql, verdict);
    this.record.finish(unit, verdict.error!.code);
    t.willFail({ k: K.Parse, name, effects: 0 });
    return parseMessage(name, this.refuse(verdict.error!));
  }

  private onBind(type: number, buf: Buffer, start: number, end: number): Buffer | null | undefined {
    const t = this.tracker;
    const b = decodeBind(buf, start, end);
    const stmt = t.statement(b.statement);
    if (stmt === WAIT) return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
    if (typeof stmt === 'string') return this.refuseMessage(noStatement(b.statement, stmt), `<Bind of prepared statement "${b.statement}">`);
    // An approver must see (and a `once` approval bind) the values a statement runs with.
    const params = stmt.verdict.decision.action === 'approve' ? describeBindParams(buf, b.paramsAt) : undefined;
    // The same statement bound again with the same result formats (pgbench, ORMs: every
    // execution) shares one portal record, and so its row plan.
    let portal = stmt.lastPortal;
    if (params !== undefined || !portal || !sameFormats(portal.formats, b.formats)) {
      portal = { stmt, formats: b.formats, params };
      if (params === undefined) stmt.lastPortal = portal;
    }
    t.push({ k: K.Bind, name: b.portal, portal, effects: 0 });
    return undefined;
  }

  private onExecute(type: number, buf: Buffer, start: number, end: number): Buffer | null | undefined {
    const t = this.tracker;
    const [portalName, next] = readCString(buf, start + 5, end);
    if (next + 4 !== end) throw new ProtocolError('invalid Execute message');
    const portal = t.portal(portalName);
    if (portal === WAIT) return this.pauseUntil(t.lastBoundary()!, type, buf, start, end);
    if (typeof portal === 'string') return this.refuseMessage(noPortal(portalName, portal), `<Execute of portal "${portalName}">`);
    const stmt = portal.stmt;
    // The row shape must be known before a binary result is let through: a type that
    // cannot be masked is refused before it runs. The proxy asks the server itself.
    if (this.planOf(portal) === undefined && hasBinary(portal.formats)) {
      const describing = this.describing(portal);
      // The server holds its answers until Flush or Sync: a Flush of the proxy's own gets the shape here.
      if (describing) {
        this.pauseUntil(describing, type, buf, start, end);
        return FLUSH;
      }
      const own = t.push({ k: K.DescribePortal, name: portalName, portal, own: true, effects: 0 });
      this.pauseUntil(own, type, buf, start, end);
      return Buffer.concat([describeMessage('P', portalName), FLUSH]);
    }
    const unmaskable = this.planOf(portal)?.unmaskable;
    if (unmaskable) return this.refuseMessage(cannotMask(unmaskable), stmt.sql);
    // Decided again at each Execute: a policy reloaded since Parse applies now.
    const verdict = this.unreadable ?? (this.record.usable() ? this.executeVerdict(stmt) : AUDIT_DOWN);
    const frame = buf.subarray(start, end);
    if (this.needsApproval(verdict)) {
      return this.startHold({ k: K.Execute, sql: stmt.sql + (portal.params ?? ''), stmtSql: stmt.sql, verdict, frame: Buffer.from(frame), portalName, portal });
    }
    return this.admitExecute(portalName, portal, verdict, frame);
  }

  private admitQuery(sql: string, verdict: Verdict, approval?: ApprovalRecord): Buffer | undefined {
    const unit = this.record.unit(sql, verdict);
    unit.approval = approval;
    this.record.count(verdict);
    this.tracker.push({ k: K.Query, name: '', unit, effects: verdict.forward ? namespaceEffects(sql) : 0 });
    if (verdict.forward) return undefined;
    return queryMessage(this.refuse(verdict.error!));
  }

  /** Forwards an Execute (`frame`) or its refusal; returns what replaces the frame, if anything. */
  private admitExecute(portalName: string, portal: Portal, verdict: Verdict, frame: Buffer, approval?: ApprovalRecord): Buffer | undefined {
    const unit = this.record.unit(portal.stmt.sql, verdict);
    unit.approval = approval;
    this.record.count(verdict);
    const t = this.tracker;
    if (!verdict.forward) {
      t.willFail({ k: K.Refusal, name: portalName, unit, effects: 0 });
      return describeMessage('S', this.refuse(verdict.error!));
    }
    // Text results of an undescribed portal: the proxy's own Describe goes just before,
    // and its answer (kept from the client) gives the row shape before the first row.
    let own: Buffer | undefined;
    if (this.planOf(portal) === undefined && !this.describing(portal)) {
      t.push({ k: K.DescribePortal, name: portalName, portal, own: true, effects: 0 });
      own = describeMessage('P', portalName);
    }
    t.push({ k: K.Execute, name: portalName, portal, unit, effects: portal.stmt.effects });
    return own ? Buffer.concat([own, frame]) : undefined;
  }

  /** Replaces a client message the proxy refuses (Bind, Describe, Execute) by a Describe that fails with the marker; recorded like a statement. */
  private refuseMessage(verdict: Verdict, what: string): Buffer {
    const unit = this.record.unit(what, verdict);
    this.record.count(verdict);
    this.tracker.willFail({ k: K.Refusal, name: '', unit, effects: 0 });
    return describeMessage('S', this.refuse(verdict.error!));
  }

  /** The row plan of a portal, when its shape is known (its own Describe, or its statement's with the Bind formats). */
  private planOf(p: Portal): RowPlan | undefined {
    if (p.plan) return p.plan;
    const fields = p.stmt.fields;
    if (!fields) return undefined;
    return (p.plan = planRow(fields, p.formats, this.ctx.starred, derivedColumns(p.stmt.sql, 0, this.ctx.starred, fields)));
  }

  /** An unanswered Describe of this portal, or of its statement, that will give its row shape. */
  private describing(p: Portal): Entry | undefined {
    for (const e of this.tracker.pending) if ((e.k === K.DescribePortal && e.portal === p) || (e.k === K.DescribeStmt && e.stmt === p.stmt)) return e;
    return undefined;
  }

  private refuse(error: PgErrorFields): string {
    const marker = `agentgate_denied_${this.nonce}_${++this.markerSeq}`;
    this.denials.push({ marker, error });
    return marker;
  }

  // --- pauses: approval holds and waits for the server -------------------------------

  private needsApproval(v: Verdict): boolean {
    return !v.forward && v.decision.action === 'approve' && this.ctx.approvals !== undefined;
  }

  /** Queues this frame, and every later one, until the server has answered `until`. */
  private pauseUntil(until: Entry, type: number, buf: Buffer, start: number, end: number): null {
    this.paused = { queue: [], bytes: 0, until };
    return this.enqueue(type, buf, start, end);
  }

  /** A frame that arrived while paused: kept, in order, for the resume. */
  private enqueue(type: number, buf: Buffer, start: number, end: number): null {
    if (type === F.Terminate) {
      this.close(this.paused?.hold ? 'client terminated the session while a statement waited for approval' : 'client terminated the session');
      return null;
    }
    const p = this.paused!;
    p.bytes += end - start;
    if (p.bytes > this.ctx.maxMessageBytes) throw new ProtocolError(p.hold ? 'too much data sent while a statement waits for approval' : 'too much data sent while a statement waits for the server');
    p.queue.push({ type, frame: Buffer.from(buf.subarray(start, end)) });
    return null;
  }

  /** Resumes a pause whose awaited answer arrived (called after each server chunk). */
  private checkPause(): void {
    const p = this.paused;
    if (!p?.until?.done) return;
    p.until = undefined;
    // After this chunk's writes: the replay may send to the server.
    setImmediate(() => {
      if (this.paused !== p || this.closed) return;
      this.paused = undefined;
      this.resume(p.queue, []);
    });
  }

  /**
   * Replays, in order, client frames kept during a pause, after `out` (what goes first),
   * until one of them pauses again: the rest then joins that pause's queue (which is new
   * and empty: no frame arrives during this synchronous replay, so the order is kept).
   */
  private resume(queue: QueuedFrame[], out: Buffer[]): void {
    try {
      for (let i = 0; i < queue.length && !this.closed; i++) {
        const p = this.paused;
        if (p) {
          for (let j = i; j < queue.length; j++) {
            p.queue.push(queue[j]);
            p.bytes += queue[j].frame.length;
          }
          break;
        }
        const q = queue[i];
        const rep = this.onClientMessage(q.type, q.frame, 0, q.frame.length);
        if (rep === undefined) out.push(q.frame);
        else if (rep !== null) out.push(rep);
      }
    } catch (err) {
      return this.clientFailed(err);
    }
    if (out.length && !this.closed) this.send(this.server, this.client, out);
    if (this.record.queued) this.record.flush();
  }

  /** Holds a Query or Execute while the approval service decides; returns null (nothing forwarded now). */
  private startHold(h: Omit<Hold, 'abort' | 'since'>): null {
    const hold: Hold = { ...h, abort: new AbortController(), since: Date.now() };
    const pause: Pause = { queue: [], bytes: 0, hold };
    this.paused = pause;
    this.ctx.approvals!
      .hold({
        connection: this.ctx.connection,
        sql: hold.sql,
        decision: hold.verdict.decision,
        identity: this.ctx.identity,
        signal: hold.abort.signal,
        notice: (message, detail) => {
          if (!this.closed && this.paused === pause) this.client.write(fieldsMessage(B.NoticeResponse, { S: 'NOTICE', V: 'NOTICE', C: '00000', M: message, ...(detail ? { D: detail } : {}) }));
        },
      })
      .catch((err: Error): ApprovalOutcome => ({
        forward: false,
        result: 'unavailable',
        reason: `fail closed: ${err.message}`,
        error: { severity: 'ERROR', code: '42501', message: `agentgate: approval required, but the approval check failed: ${err.message}` },
      }))
      .then((outcome) => this.release(pause, outcome));
    return null;
  }

  private release(pause: Pause, outcome: ApprovalOutcome): void {
    const hold = pause.hold!;
    if (this.paused !== pause) return;
    this.paused = undefined;
    this.ctx.metrics.approvalHold(outcome.result, (Date.now() - hold.since) / 1000);
    const d = hold.verdict.decision;
    const verdict: Verdict = {
      ...hold.verdict,
      forward: outcome.forward,
      decision: { ...d, reason: `${outcome.reason} (rule "${d.rule}")` },
      error: outcome.error,
    };
    if (this.closed || this.tracker.skipping) {
      // The client left while it waited, or an earlier message failed so the server skips this one: the statement never ran; record that.
      const unit = this.record.unit(hold.stmtSql, { ...verdict, forward: false });
      unit.approval = outcome.approval;
      this.record.count(verdict);
      this.record.finish(unit, '57014');
      if (this.closed) return void this.record.flush();
      return this.resume(pause.queue, []);
    }
    const first =
      hold.k === K.Query
        ? this.admitQuery(hold.sql, verdict, outcome.approval)
        : this.admitExecute(hold.portalName, hold.portal!, verdict, hold.frame, outcome.approval);
    this.resume(pause.queue, [first ?? hold.frame]);
  }

  // --- decisions ----------------------------------------------------------------------

  /** Decided again at each Execute, cached per statement until the policy in force changes (hot reload). */
  private executeVerdict(stmt: Stmt): Verdict {
    const policy = this.ctx.policy.current();
    if (stmt.decidedBy !== policy || stmt.executeVerdict === undefined) {
      stmt.executeVerdict = decideOperations(stmt.verdict.operations, this.ctx.identity, this.ctx.policy);
      stmt.decidedBy = policy;
    }
    return stmt.executeVerdict;
  }

  private decide(sql: string): Verdict {
    if (this.unreadable) return this.unreadable;
    if (!this.record.usable()) return AUDIT_DOWN;
    return decideSql(sql, this.ctx.connection, this.ctx.identity, this.ctx.classifier, this.ctx.policy);
  }

  // A statement is classified under the settings the server last reported, but one still
  // running (a function calling set_config, a trigger) may change them before this text
  // reaches the server's parser: PostgreSQL reports the change just before its next
  // ReadyForQuery. Only text with a backslash (standard_conforming_strings) or a non-ASCII
  // character (client_encoding) can read differently, so only such text waits until the
  // server has answered every batch before it; it is refused when an Execute of its own
  // unfinished batch precedes it (that batch's report follows the client's Sync, after it).
  private settingsInDoubt(sql: string, ranBefore: boolean): 'wait' | 'refuse' | undefined {
    if (!ranBefore && this.tracker.pending.length === 0) return undefined;
    if (!SETTINGS_SENSITIVE.test(sql)) return undefined;
    if (ranBefore) return 'refuse';
    return this.tracker.lastBoundary() ? 'wait' : undefined;
  }

  /** A setting the server reports (ROLE/DATABASE defaults, set_config in a function…). */
  private noteParameter(name: string, value: string): void {
    const problem = sessionParameterProblem(name, value);
    if (!problem || this.unreadable) return;
    this.unreadable = refusal(
      'session-parameter',
      problem,
      `the server reports ${name} = ${value} for this session; ${problem}, so every statement of this session is refused: reconnect with the default setting (and remove any ALTER ROLE/DATABASE … SET ${name})`,
    );
    this.ctx.log.warn({ connection: this.ctx.connection, parameter: name, value }, 'session left the settings the SQL classifier reads under; refusing its statements');
    this.record.event('session-parameter-refused', { sqlstate: '42501', detail: problem });
  }

  // --- server → client -----------------------------------------------------------

  private onServerData(chunk: Buffer): void {
    if (this.closed) return;
    this.record.bytesOut += chunk.length;
    const ob = this.toClient;
    ob.reset();
    let data: Buffer;
    try {
      data = this.serverReader.push(chunk, this.onServerFrame);
    } catch (err) {
      const desync = err instanceof Desync;
      this.ctx.log.error({ connection: this.ctx.connection, err: (err as Error).message }, desync ? 'lost track of the server\'s answers' : 'invalid message from the server');
      ob.out.length = 0;
      const what = desync ? 'the server\'s answers do not match the messages sent' : 'invalid message from the server';
      this.fatal({ severity: 'FATAL', code: '08P01', message: `agentgate: connection "${this.ctx.connection}": ${what}: ${(err as Error).message}` });
      return;
    }
    if (ob.finish(data) && !this.closed) this.send(this.client, this.server, ob.out);
    ob.out.length = 0;
    if (this.record.queued) this.record.flush();
    if (this.paused) this.checkPause();
    if (this.draining && !this.busy) this.shutdownIdle();
  }

  private onServerMessage(type: number, buf: Buffer, start: number, end: number): Buffer | null | undefined {
    const t = this.tracker;
    const head = t.head;
    switch (type) {
      case B.DataRow: {
        let plan: RowPlan;
        if (head?.k === K.Execute) {
          if (head.unit) head.unit.rows++;
          plan = head.plan ??= this.planOf(head.portal!) ?? planUnknown(head.portal!.formats);
        } else {
          const u = head?.unit;
          if (u) {
            u.rows++;
            if (u.parts && u.part < u.parts.length) u.parts[u.part].rows++;
          }
          plan = this.queryPlan;
        }
        return maskDataRow(buf, start, end, plan, this.ctx.masker);
      }
      case B.CopyData:
        return this.inCopyOut ? (this.copyMask ? this.copyMask.mask(buf, start, end) : maskCopyData(buf, start, end, this.ctx.masker, this.copyText)) : undefined;
      case B.CommandComplete:
        this.inCopyOut = false;
        if (head?.k === K.Execute) this.finish(t.complete(K.Execute), undefined);
        else {
          this.queryPlan = UNKNOWN_ROW;
          this.nextPart(head?.unit);
        }
        return undefined;
      case B.ReadyForQuery: {
        for (const e of t.ready(buf[start + 5])) this.finish(e, e.unit?.sqlstate);
        if (t.pending.length === 0) this.denials = [];
        this.queryPlan = UNKNOWN_ROW;
        return undefined;
      }
      case B.RowDescription: {
        const cols = parseRowDescription(buf, start, end);
        if (head?.k === K.DescribeStmt) {
          t.complete(K.DescribeStmt).stmt!.fields = cols;
          return undefined;
        }
        if (head?.k === K.DescribePortal) {
          const e = t.complete(K.DescribePortal);
          const p = e.portal!;
          p.plan = planRow(cols, undefined, this.ctx.starred, derivedColumns(p.stmt.sql, 0, this.ctx.starred, cols));
          p.stmt.fields ??= cols;
          return e.own ? null : undefined;
        }
        this.queryPlan = planRow(cols, undefined, this.ctx.starred, derivedColumns(head?.unit?.sql, head?.unit?.part ?? 0, this.ctx.starred, cols));
        return undefined;
      }
      case B.NoData: {
        const e = t.complete([K.DescribeStmt, K.DescribePortal]);
        if (e.k === K.DescribeStmt) e.stmt!.fields = NO_COLUMNS;
        else e.portal!.plan = planRow(NO_COLUMNS, undefined, this.ctx.starred);
        return e.own ? null : undefined;
      }
      case B.ParseComplete:
        t.complete(K.Parse);
        return undefined;
      case B.BindComplete:
        t.complete(K.Bind);
        return undefined;
      case B.CloseComplete:
        t.complete([K.CloseStmt, K.ClosePortal]);
        return undefined;
      case B.EmptyQueryResponse:
      case B.PortalSuspended:
        if (head?.k === K.Execute) this.finish(t.complete(K.Execute), undefined);
        else this.nextPart(head?.unit);
        return undefined;
      case B.ErrorResponse:
        return this.onServerError(buf, start, end, head);
      case B.NoticeResponse:
        return maskFieldsMessage(buf, start, end, this.ctx.masker);
      case B.NotificationResponse:
        return maskNotification(buf, start, end, this.ctx.masker);
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        this.inCopyOut = true;
        this.copyText = buf[start + 5] === 0;
        this.copyMask = copyOutMasker(buf, start, head?.unit?.sql, head?.unit?.part ?? 0, this.ctx.starred, this.ctx.masker);
        return undefined;
      case B.ParameterStatus: {
        const [name, p1] = readCString(buf, start + 5, end);
        this.noteParameter(name, readCString(buf, p1, end)[0]);
        return undefined;
      }
      default:
        // ParameterDescription, CopyInResponse, CopyDone, FunctionCallResponse, …
        return undefined;
    }
  }

  private onServerError(buf: Buffer, start: number, end: number, head: Entry | undefined): Buffer | undefined {
    let replacement: Buffer | undefined;
    let sqlstate: string | undefined;
    if (this.denials.length) {
      const fields = parseFields(buf, start + 5, end);
      const msg = fields.get('M') ?? '';
      const i = this.denials.findIndex((d) => msg.includes(d.marker));
      if (i >= 0) {
        const d = this.denials[i];
        this.denials.splice(0, i + 1);
        replacement = errorResponse(d.error);
        sqlstate = d.error.code;
      }
    }
    if (!replacement) {
      sqlstate = errorField(buf, start, end, 0x43 /* C */);
      const severity = errorField(buf, start, end, 0x56 /* V */) ?? errorField(buf, start, end, 0x53 /* S */);
      // The server ends the session itself: its FATAL is the client's last message.
      if (severity === 'FATAL' || severity === 'PANIC') this.serverFatal = true;
    }
    this.inCopyOut = false;
    if (head?.unit && (head.k === K.Query || head.k === K.Function)) {
      const u = head.unit;
      u.sqlstate ??= sqlstate;
      // The failing statement of a multi-statement query, and none after it, ran.
      if (u.parts) for (let i = u.part; i < u.parts.length; i++) u.parts[i].sqlstate ??= sqlstate;
    }
    // Extended protocol: the failed message and everything up to Sync are retired.
    for (const e of this.tracker.error()) this.finish(e, e.unit?.sqlstate ?? sqlstate);
    if (replacement) return replacement;
    return maskFieldsMessage(buf, start, end, this.ctx.masker);
  }

  private finish(e: Entry, sqlstate: string | undefined): void {
    if (e.unit) this.record.finish(e.unit, sqlstate);
  }

  private nextPart(u: Unit | undefined): void {
    if (u?.parts && u.part < u.parts.length) u.parts[u.part++].endT = performance.now();
  }

  // --- writing, closing ------------------------------------------------------------

  /** Writes buffers to `to`; pauses `from` while `to` is full. */
  private send(to: net.Socket, from: net.Socket, bufs: Buffer[]): void {
    let ok: boolean;
    if (bufs.length === 1) ok = to.write(bufs[0]);
    else {
      to.cork();
      for (const b of bufs) to.write(b);
      to.uncork();
      ok = to.writableLength < to.writableHighWaterMark;
    }
    if (!ok && !from.isPaused()) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  }

  private protocolViolation(detail: string): void {
    this.ctx.metrics.violations.inc();
    this.ctx.log.warn({ connection: this.ctx.connection, session: this.ctx.sessionId, detail }, 'malformed client message: closing the connection');
    this.record.event('protocol-violation', { sqlstate: '08P01', detail });
    this.fatal({ severity: 'FATAL', code: '08P01', message: `agentgate: invalid frontend message: ${detail}` });
  }

  private fatal(e: PgErrorFields): void {
    if (this.closed) return;
    this.client.end(errorResponse(e));
    this.close(e.message);
  }

  private shutdownIdle(): void {
    this.fatal({ severity: 'FATAL', code: '57P01', message: 'terminating connection: the agentgate sidecar is shutting down' });
  }

  private serverGone(reason: string): void {
    if (this.closed) return;
    // After the server's own FATAL (already forwarded), a second one would only confuse the client.
    if (this.serverFatal) return this.close(reason);
    this.fatal({ severity: 'FATAL', code: '08006', message: `agentgate: connection "${this.ctx.connection}": ${reason}` });
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    const t = this.tracker;
    // A client gone mid-statement must not leave the statement running on the server,
    // nor a request for approval open.
    if (t.pending.length > 0 && !this.server.destroyed && !this.serverFatal) this.ctx.cancelUpstream();
    this.paused?.hold?.abort.abort('disconnect' satisfies AbortCause);
    for (const e of t.pending) if (e.unit) this.record.finish(e.unit, e.unit.sqlstate ?? '57014');
    t.pending.length = 0;
    this.clientReader.dispose();
    if (!this.server.destroyed) this.server.end(TERMINATE);
    if (!this.client.destroyed) this.client.end();
    setTimeout(() => {
      this.server.destroy();
      this.client.destroy();
    }, 1000).unref();
    this.record.end(reason);
    this.onClose?.();
  }
}

const NO_COLUMNS: never[] = [];

/** Text whose reading depends on standard_conforming_strings (`\\`) or client_encoding (non-ASCII). */
const SETTINGS_SENSITIVE = /[\\\u0080-\uffff]/;
/** Some result column is requested in binary. */
function hasBinary(formats: number[]): boolean {
  for (let i = 0; i < formats.length; i++) if (formats[i] !== 0) return true;
  return false;
}

/** Result formats of two Binds are the same (the common case: the same empty or one-element list). */
function sameFormats(a: number[], b: number[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
