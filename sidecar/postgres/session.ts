// One client connection after startup: relays messages both ways, decides each
// statement before it reaches the server, masks what comes back, and records every
// statement. Runs synchronously per chunk: no awaits on the hot path.
//
// How a refusal reaches both sides: the refused Query/Parse is replaced by a Query
// or Parse of a marker text that cannot parse (`agentgate_denied_<nonce>_<n>`). The
// server answers it with a syntax error exactly where the real statement would
// have failed, so its own state follows PostgreSQL's rules: a transaction block is
// aborted (a later COMMIT answers ROLLBACK), a pipeline skips to Sync, an unnamed
// statement is dropped. The proxy recognises the marker in that ErrorResponse and
// replaces it with its own 42501 error. Responses stay in server order for free.
//
// Which row shape applies to a DataRow: the server answers messages in the order
// they were sent, so `expect` mirrors the messages forwarded (Parse, Bind, Describe,
// Execute, Sync, Query, …) and its head says what an incoming message answers.

import type net from 'node:net';
import crypto from 'node:crypto';
import type { Identity } from '../../core/identity.js';
import type { AuditEventInput, AuditSink } from '../../core/audit/types.js';
import type { PgRequest, Policy, PolicySource } from '../../core/policy/types.js';
import type { Logger } from '../../core/log.js';
import { B, F, FrameReader, ProtocolError, TERMINATE, errorResponse, fieldsMessage, isFrontendType, parseFields, parseMessage, queryMessage, readCString, skipCString } from './wire.js';
import type { PgErrorFields } from './wire.js';
import { decideOperations, decideSql, refusal } from './decide.js';
import { sessionParameterProblem } from '../../core/sql/index.js';
import type { SqlClassifier, Verdict } from './decide.js';
import { UNKNOWN_ROW, maskCopyData, maskDataRow, maskFieldsMessage, maskNotification, parseRowDescription, planRow, planUnknown } from './result-mask.js';
import type { ColumnInfo, RowPlan, TextMasker } from './result-mask.js';
import { derivedColumns } from './provenance.js';
import { copyOutMasker } from './copy-mask.js';
import type { CopyOutMasker } from './copy-mask.js';
import type { BoundMetrics } from './metrics.js';
import type { AbortCause, ApprovalOutcome, ApprovalRecord, PgApprovalGate } from './approval-gate.js';

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
  /** False once the audit sink broke: statements are refused (nothing runs unrecorded). */
  auditHealthy(): boolean;
  /** Sends the server's own CancelRequest on a new connection. */
  cancelUpstream(): void;
  /** The approval service; without it `approve` decisions are refused (fail closed). */
  approvals?: PgApprovalGate;
  /** The server's ParameterStatus values at startup (role/database settings included). */
  serverParameters: readonly (readonly [string, string])[];
}

const enum K {
  Query,
  Parse,
  Bind,
  DescribeStmt,
  DescribePortal,
  Execute,
  Close,
  Sync,
  Function,
}

interface Unit {
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

interface Stmt {
  sql: string;
  verdict: Verdict;
  fields?: ColumnInfo[];
  /** The Execute-time verdict and the policy object it was decided under: a hot reload swaps that object, which re-decides. */
  decidedBy?: Policy;
  executeVerdict?: Verdict;
}

interface Portal {
  stmt?: Stmt;
  formats: number[];
  plan?: RowPlan;
  /** The bound parameter values, spelled out, for a statement that needs approval. */
  params?: string;
}

interface Expect {
  k: K;
  name: string;
  unit?: Unit;
  plan?: RowPlan;
}

interface Denial {
  marker: string;
  error: PgErrorFields;
}

/** A client frame kept, as sent, while the session waits. */
type QueuedFrame = { type: number; frame: Buffer };

/**
 * A Query or Execute waiting for a human decision. Nothing of it has reached the server;
 * frames the client sends meanwhile are queued (reading goes on, so a client that leaves
 * is noticed and its request cancelled) and processed in order once it is released.
 */
interface Hold {
  k: K.Query | K.Execute;
  /** What the approver sees: the statement, and for an Execute the bound values. */
  sql: string;
  /** The statement text as audited. */
  stmtSql: string;
  verdict: Verdict;
  frame: Buffer;
  portal: string;
  queue: QueuedFrame[];
  bytes: number;
  abort: AbortController;
  since: number;
}

export class Session {
  private readonly clientReader: FrameReader;
  private readonly serverReader = new FrameReader(0x7fffffff);
  private readonly expect: Expect[] = [];
  private readonly statements = new Map<string, Stmt>();
  private readonly portals = new Map<string, Portal>();
  private denials: Denial[] = [];
  private readonly nonce = crypto.randomBytes(6).toString('hex');
  private markerSeq = 0;
  /** Row shape for DataRows in a simple query (set by each RowDescription). */
  private queryPlan: RowPlan = UNKNOWN_ROW;
  private inCopyOut = false;
  private copyMask?: CopyOutMasker;
  /** The COPY OUT in progress is text or CSV (not binary). */
  private copyText = true;
  private status = 0x49; // 'I'
  private bytesIn = 0;
  private bytesOut = 0;
  private draining = false;
  private closed = false;
  private hold: Hold | undefined;
  private readonly openedMs = Date.now();
  /**
   * Set once the server reports a setting under which the classifier reads SQL text
   * differently (sessionParameterProblem): from then on every statement is refused.
   * Sticky, since statements already forwarded may have run under it.
   */
  private unreadable: Verdict | undefined;
  /** Client frames held until the server has answered every batch sent before them. */
  private barrier: { queue: QueuedFrame[]; bytes: number } | undefined;
  /** An Execute was sent since the client's last Sync/Query (its settings are reported only at ReadyForQuery). */
  private runInOpenBatch = false;
  /** Called once when both sockets are gone. */
  onClose: (() => void) | undefined;

  constructor(
    private readonly client: net.Socket,
    private readonly server: net.Socket,
    private readonly ctx: SessionContext,
  ) {
    this.clientReader = new FrameReader(ctx.maxMessageBytes, isFrontendType);
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
    this.audit('connection-start');
    for (const [name, value] of this.ctx.serverParameters) this.noteParameter(name, value);
    if (serverRest.length) this.onServerData(serverRest);
    if (clientRest.length) this.onClientData(clientRest);
    this.client.resume();
    this.server.resume();
  }

  /** True while a statement is in flight (sent and not finished, or held for approval). */
  get busy(): boolean {
    return this.expect.length > 0 || this.hold !== undefined;
  }

  /**
   * CancelRequest: a statement held for approval is refused with 57014 and its request
   * cancelled. Returns true when the server is also working on something (then the
   * listener sends the server's own cancel too).
   */
  cancel(): boolean {
    this.hold?.abort.abort('cancel' satisfies AbortCause);
    return this.expect.length > 0;
  }

  /** SIGTERM: close now if idle, else after the statement in flight completes. */
  drain(): void {
    this.draining = true;
    if (!this.busy) this.shutdownIdle();
  }

  // --- client → server -----------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    if (this.closed) return;
    this.bytesIn += chunk.length;
    const ob = this.toServer;
    ob.reset();
    let data: Buffer;
    try {
      data = this.clientReader.push(chunk, this.onClientFrame);
    } catch (err) {
      // Client bytes are untrusted: whatever they break ends this connection, never the process.
      if (!(err instanceof ProtocolError)) this.ctx.log.error({ err: (err as Error).stack }, 'unexpected error handling a client message');
      return this.protocolViolation(err instanceof ProtocolError ? err.message : `malformed message (${(err as Error).message})`);
    }
    if (ob.finish(data) && !this.closed) this.send(this.server, this.client, ob.out);
    ob.out.length = 0;
    if (this.auditQueue.length) this.flushAudit();
  }

  private readonly toServer = new Outbox();
  private readonly toClient = new Outbox();
  // Bound once: FrameReader calls these per frame, with no closure allocated per chunk.
  private readonly onClientFrame = (type: number, buf: Buffer, start: number, end: number): void => {
    this.toServer.frame(this.hold ? this.queueHeld(type, buf, start, end) : this.onClientMessage(type, buf, start, end), buf, start, end);
  };
  private readonly onServerFrame = (type: number, buf: Buffer, start: number, end: number): void => {
    this.toClient.frame(this.onServerMessage(type, buf, start, end), buf, start, end);
  };

  /** undefined: forward as is; Buffer: forward this instead; null: drop. */
  private onClientMessage(type: number, buf: Buffer, start: number, end: number): Buffer | null | undefined {
    const body = start + 5;
    if (this.barrier) return this.queueBarrier(type, buf, start, end);
    const ranBefore = this.runInOpenBatch;
    if (type === F.Execute) this.runInOpenBatch = true;
    else if (type === F.Sync || type === F.Query) this.runInOpenBatch = false;
    switch (type) {
      case F.Query: {
        const [sql, next] = readCString(buf, body, end);
        if (next !== end) throw new ProtocolError('invalid Query message: trailing bytes');
        const settings = this.settingsInDoubt(sql, ranBefore);
        if (settings === 'wait') return this.startBarrier(type, buf, start, end);
        const verdict = settings === 'refuse' ? SETTINGS_IN_DOUBT : this.decide(sql);
        if (this.needsApproval(verdict)) return this.startHold(K.Query, sql, verdict, buf, start, end, '');
        return this.admitQuery(sql, verdict);
      }
      case F.Parse: {
        const [name, p1] = readCString(buf, body, end);
        const [sql, p2] = readCString(buf, p1, end);
        if (p2 + 2 > end || p2 + 2 + 4 * buf.readInt16BE(p2) !== end) throw new ProtocolError('invalid Parse message');
        const settings = this.settingsInDoubt(sql, ranBefore);
        if (settings === 'wait') return this.startBarrier(type, buf, start, end);
        const verdict = settings === 'refuse' ? SETTINGS_IN_DOUBT : this.decide(sql);
        this.expect.push({ k: K.Parse, name });
        // A statement that needs approval is prepared (that runs nothing); each Execute of it is held.
        if (verdict.forward || this.needsApproval(verdict)) {
          this.statements.set(name, { sql, verdict });
          return undefined;
        }
        // A refused Parse is recorded now: no Execute of it will ever run.
        this.countStatement(verdict);
        // The server drops the unnamed statement at any Parse; a named one that already
        // exists stays (the failing Parse cannot replace it), so our record of it stays too.
        if (name === '') this.statements.delete(name);
        const unit = this.newUnit(sql, verdict);
        this.finishUnit(unit, verdict.error!.code);
        return parseMessage(name, this.refuse(verdict.error!));
      }
      case F.Bind: {
        const [portal, p1] = readCString(buf, body, end);
        const [stmtName, p2] = readCString(buf, p1, end);
        const formats = readBindResultFormats(buf, p2, end);
        const stmt = this.statements.get(stmtName);
        // An approver must see (and a `once` approval bind) the values a statement runs with.
        const params = stmt && stmt.verdict.decision.action === 'approve' ? describeBindParams(buf, p2) : undefined;
        const prev = this.portals.get(portal);
        // The same statement bound again with the same result formats (pgbench, ORMs: every
        // execution) keeps its portal record and so its row plan.
        if (!prev || prev.stmt !== stmt || params !== undefined || prev.params !== undefined || !sameFormats(prev.formats, formats)) {
          this.portals.set(portal, { stmt, formats, params });
        }
        this.expect.push({ k: K.Bind, name: portal });
        return undefined;
      }
      case F.Describe: {
        const what = buf[body];
        const [name, next] = readCString(buf, body + 1, end);
        if (next !== end || (what !== 0x53 && what !== 0x50)) throw new ProtocolError('invalid Describe message');
        this.expect.push({ k: what === 0x53 ? K.DescribeStmt : K.DescribePortal, name });
        return undefined;
      }
      case F.Execute: {
        const [portalName, next] = readCString(buf, body, end);
        if (next + 4 !== end) throw new ProtocolError('invalid Execute message');
        const portal = this.portals.get(portalName);
        const stmt = portal?.stmt;
        if (!stmt) {
          // Unknown portal: the server answers with its own error.
          this.expect.push({ k: K.Execute, name: portalName });
          return undefined;
        }
        // Decided again at each Execute: a policy reloaded since Parse applies now.
        const verdict = this.unreadable ?? (this.ctx.auditHealthy() ? this.executeVerdict(stmt) : AUDIT_DOWN);
        if (this.needsApproval(verdict)) return this.startHold(K.Execute, stmt.sql + (portal!.params ?? ''), verdict, buf, start, end, portalName, stmt.sql);
        return this.admitExecute(portalName, stmt.sql, verdict);
      }
      case F.Sync:
        this.expect.push({ k: K.Sync, name: '' });
        return undefined;
      case F.Close: {
        const what = buf[body];
        const [name] = readCString(buf, body + 1, end);
        if (what === 0x53) this.statements.delete(name);
        else if (what === 0x50) this.portals.delete(name);
        else throw new ProtocolError('invalid Close message');
        this.expect.push({ k: K.Close, name });
        return undefined;
      }
      case F.FunctionCall: {
        // The fast-path interface calls any function by OID, out of sight of the SQL
        // classifier (lo_export, pg_read_file, …): refused.
        const verdict = refusal(
          'function-call-protocol',
          'the fast-path function call protocol bypasses SQL policy',
          'the fast-path function call protocol is not allowed; call the function in a SQL statement instead',
        );
        const unit = this.newUnit('<fast-path function call>', verdict);
        this.countStatement(verdict);
        this.expect.push({ k: K.Function, name: '', unit });
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

  private admitQuery(sql: string, verdict: Verdict, approval?: ApprovalRecord): Buffer | undefined {
    const unit = this.newUnit(sql, verdict);
    unit.approval = approval;
    this.countStatement(verdict);
    this.expect.push({ k: K.Query, name: '', unit });
    // A simple query destroys the unnamed statement and portal.
    this.statements.delete('');
    this.portals.delete('');
    if (verdict.forward) return undefined;
    return queryMessage(this.refuse(verdict.error!));
  }

  private admitExecute(portalName: string, sql: string, verdict: Verdict, approval?: ApprovalRecord): Buffer | undefined {
    const unit = this.newUnit(sql, verdict);
    unit.approval = approval;
    this.countStatement(verdict);
    this.expect.push({ k: K.Execute, name: portalName, unit });
    if (verdict.forward) return undefined;
    return parseMessage('', this.refuse(verdict.error!));
  }

  // --- approval holds --------------------------------------------------------------

  private needsApproval(v: Verdict): boolean {
    return !v.forward && v.decision.action === 'approve' && this.ctx.approvals !== undefined;
  }

  /** Holds a Query or Execute while the approval service decides; returns null (nothing forwarded now). */
  private startHold(k: K.Query | K.Execute, sql: string, verdict: Verdict, buf: Buffer, start: number, end: number, portal: string, stmtSql = sql): null {
    const hold: Hold = { k, sql, stmtSql, verdict, frame: Buffer.from(buf.subarray(start, end)), portal, queue: [], bytes: 0, abort: new AbortController(), since: Date.now() };
    this.hold = hold;
    this.ctx.approvals!
      .hold({
        connection: this.ctx.connection,
        sql,
        decision: verdict.decision,
        identity: this.ctx.identity,
        signal: hold.abort.signal,
        notice: (message, detail) => {
          if (!this.closed && this.hold === hold) this.client.write(fieldsMessage(B.NoticeResponse, { S: 'NOTICE', V: 'NOTICE', C: '00000', M: message, ...(detail ? { D: detail } : {}) }));
        },
      })
      .catch((err: Error): ApprovalOutcome => ({
        forward: false,
        result: 'unavailable',
        reason: `fail closed: ${err.message}`,
        error: { severity: 'ERROR', code: '42501', message: `agentgate: approval required, but the approval check failed: ${err.message}` },
      }))
      .then((outcome) => this.release(hold, outcome));
    return null;
  }

  /** A frame that arrived while a statement is held: kept, in order, for after the release. */
  private queueHeld(type: number, buf: Buffer, start: number, end: number): null {
    if (type === F.Terminate) {
      this.close('client terminated the session while a statement waited for approval');
      return null;
    }
    const hold = this.hold!;
    hold.bytes += end - start;
    if (hold.bytes > this.ctx.maxMessageBytes) throw new ProtocolError('too much data sent while a statement waits for approval');
    hold.queue.push({ type, frame: Buffer.from(buf.subarray(start, end)) });
    return null;
  }

  /** The hold in force now (a re-read the compiler does not narrow away). */
  private heldNow(): Hold | undefined {
    return this.hold;
  }

  private release(hold: Hold, outcome: ApprovalOutcome): void {
    if (this.hold !== hold) return;
    this.hold = undefined;
    this.ctx.metrics.approvalHold(outcome.result, (Date.now() - hold.since) / 1000);
    const d = hold.verdict.decision;
    const verdict: Verdict = {
      ...hold.verdict,
      forward: outcome.forward,
      decision: { ...d, reason: `${outcome.reason} (rule "${d.rule}")` },
      error: outcome.error,
    };
    if (this.closed) {
      // The client left while it waited: the statement never ran; record that.
      const unit = this.newUnit(hold.stmtSql, { ...verdict, forward: false });
      unit.approval = outcome.approval;
      this.countStatement(verdict);
      this.finishUnit(unit, '57014');
      this.flushAudit();
      return;
    }
    const out: Buffer[] = [];
    try {
      const first =
        hold.k === K.Query ? this.admitQuery(hold.sql, verdict, outcome.approval) : this.admitExecute(hold.portal, hold.stmtSql, verdict, outcome.approval);
      out.push(first ?? hold.frame);
      this.replayQueued(hold.queue, out);
      if (this.closed) return;
    } catch (err) {
      return this.protocolViolation(err instanceof ProtocolError ? err.message : `malformed message (${(err as Error).message})`);
    }
    if (out.length && !this.closed) this.send(this.server, this.client, out);
    if (this.auditQueue.length) this.flushAudit();
  }

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
    if (!this.ctx.auditHealthy()) return AUDIT_DOWN;
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
    if (!ranBefore && this.expect.length === 0) return undefined;
    if (!SETTINGS_SENSITIVE.test(sql)) return undefined;
    if (ranBefore) return 'refuse';
    return this.batchPending() ? 'wait' : undefined;
  }

  private batchPending(): boolean {
    return this.expect.some((e) => e.k === K.Sync || e.k === K.Query || e.k === K.Function);
  }

  private startBarrier(type: number, buf: Buffer, start: number, end: number): null {
    this.barrier = { queue: [], bytes: 0 };
    return this.queueBarrier(type, buf, start, end);
  }

  private queueBarrier(type: number, buf: Buffer, start: number, end: number): null {
    const b = this.barrier!;
    b.bytes += end - start;
    if (b.bytes > this.ctx.maxMessageBytes) throw new ProtocolError('too much data sent while a statement waits for the server');
    b.queue.push({ type, frame: Buffer.from(buf.subarray(start, end)) });
    return null;
  }

  /**
   * Replays, in order, client frames kept while the session waited (for an approval or for
   * the server), collecting what goes upstream in `out`, until one of them is held for
   * approval: the rest then waits behind that hold. Such a hold is new and its queue empty
   * (no frame arrives during this synchronous replay), so appending keeps the order.
   */
  private replayQueued(queue: QueuedFrame[], out: Buffer[]): void {
    for (let i = 0; i < queue.length && !this.closed; i++) {
      const hold = this.heldNow();
      if (hold) {
        const rest = queue.slice(i);
        hold.queue.push(...rest);
        hold.bytes += rest.reduce((n, q) => n + q.frame.length, 0);
        return;
      }
      const q = queue[i];
      const rep = this.onClientMessage(q.type, q.frame, 0, q.frame.length);
      if (rep === undefined) out.push(q.frame);
      else if (rep !== null) out.push(rep);
    }
  }

  private releaseBarrier(b: NonNullable<Session['barrier']>): void {
    if (this.barrier !== b || this.closed) return;
    this.barrier = undefined;
    const out: Buffer[] = [];
    try {
      this.replayQueued(b.queue, out);
    } catch (err) {
      return this.protocolViolation(err instanceof ProtocolError ? err.message : `malformed message (${(err as Error).message})`);
    }
    if (out.length && !this.closed) this.send(this.server, this.client, out);
    if (this.auditQueue.length) this.flushAudit();
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
    this.audit('session-parameter-refused', { sqlstate: '42501', detail: problem });
  }

  private refuse(error: PgErrorFields): string {
    const marker = `agentgate_denied_${this.nonce}_${++this.markerSeq}`;
    this.denials.push({ marker, error });
    return marker;
  }

  // --- server → client -----------------------------------------------------------

  private onServerData(chunk: Buffer): void {
    if (this.closed) return;
    this.bytesOut += chunk.length;
    const ob = this.toClient;
    ob.reset();
    let data: Buffer;
    try {
      data = this.serverReader.push(chunk, this.onServerFrame);
    } catch (err) {
      this.ctx.log.error({ connection: this.ctx.connection, err: (err as Error).message }, 'invalid message from the server');
      this.fatal({ severity: 'FATAL', code: '08P01', message: `agentgate: connection "${this.ctx.connection}": invalid message from the server: ${(err as Error).message}` });
      return;
    }
    if (ob.finish(data) && !this.closed) this.send(this.client, this.server, ob.out);
    ob.out.length = 0;
    if (this.auditQueue.length) this.flushAudit();
    if (this.draining && !this.busy) this.shutdownIdle();
  }

  private onServerMessage(type: number, buf: Buffer, start: number, end: number): Buffer | null | undefined {
    const head = this.expect[0];
    switch (type) {
      case B.DataRow: {
        let plan: RowPlan;
        if (head?.k === K.Execute) {
          if (head.unit) head.unit.rows++;
          plan = head.plan ??= this.portalPlan(head.name);
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
        if (head?.k === K.Execute) this.finishExpect(undefined);
        else {
          this.queryPlan = UNKNOWN_ROW;
          this.nextPart(head?.unit);
        }
        return undefined;
      case B.ReadyForQuery: {
        this.status = buf[start + 5];
        // Everything up to and including this Sync/Query is answered.
        while (this.expect.length) {
          const e = this.expect.shift()!;
          if (e.unit) this.finishUnit(e.unit, e.unit.sqlstate);
          if (e.k === K.Sync || e.k === K.Query || e.k === K.Function) break;
        }
        this.denials = this.expect.length ? this.denials : [];
        const barrier = this.barrier;
        if (barrier && !this.batchPending()) setImmediate(() => this.releaseBarrier(barrier));
        this.queryPlan = UNKNOWN_ROW;
        return undefined;
      }
      case B.RowDescription: {
        const cols = parseRowDescription(buf, start, end);
        if (head?.k === K.DescribeStmt) {
          const s = this.statements.get(head.name);
          if (s) s.fields = cols;
          this.expect.shift();
        } else if (head?.k === K.DescribePortal) {
          const p = this.portals.get(head.name);
          if (p) {
            p.plan = planRow(cols, undefined, this.ctx.starred, derivedColumns(p.stmt?.sql, 0, this.ctx.starred, cols));
            if (p.stmt && !p.stmt.fields) p.stmt.fields = cols;
          }
          this.expect.shift();
        } else {
          this.queryPlan = planRow(cols, undefined, this.ctx.starred, derivedColumns(head?.unit?.sql, head?.unit?.part ?? 0, this.ctx.starred, cols));
        }
        return undefined;
      }
      case B.ParseComplete:
      case B.BindComplete:
      case B.CloseComplete:
      case B.NoData:
        if (head && head.k !== K.Query) this.expect.shift();
        return undefined;
      case B.EmptyQueryResponse:
      case B.PortalSuspended:
        if (head?.k === K.Execute) this.finishExpect(undefined);
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

  private onServerError(buf: Buffer, start: number, end: number, head: Expect | undefined): Buffer | undefined {
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
    if (!replacement) sqlstate = errorCode(buf, start, end);
    this.inCopyOut = false;
    if (head?.unit) {
      const u = head.unit;
      u.sqlstate ??= sqlstate;
      // The failing statement of a multi-statement query, and none after it, ran.
      if (u.parts) for (let i = u.part; i < u.parts.length; i++) u.parts[i].sqlstate ??= sqlstate;
    }
    if (head && head.k !== K.Query && head.k !== K.Function && head.k !== K.Sync) {
      // Extended protocol: the server skips everything up to Sync.
      while (this.expect.length && this.expect[0].k !== K.Sync) {
        const e = this.expect.shift()!;
        if (e.unit) this.finishUnit(e.unit, e.unit.sqlstate ?? sqlstate);
      }
    }
    if (replacement) return replacement;
    return maskFieldsMessage(buf, start, end, this.ctx.masker);
  }

  private nextPart(u: Unit | undefined): void {
    if (u?.parts && u.part < u.parts.length) u.parts[u.part++].endT = performance.now();
  }

  private finishExpect(sqlstate: string | undefined): void {
    const e = this.expect.shift();
    if (e?.unit) this.finishUnit(e.unit, sqlstate);
  }

  private portalPlan(name: string): RowPlan {
    const p = this.portals.get(name);
    if (!p) return UNKNOWN_ROW;
    // A Describe of the portal gave the exact shape; else the statement's columns with the Bind formats.
    if (p.plan) return p.plan;
    const fields = p.stmt?.fields;
    if (!fields) return planUnknown(p.formats);
    return (p.plan = planRow(fields, p.formats, this.ctx.starred, derivedColumns(p.stmt?.sql, 0, this.ctx.starred, fields)));
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
    this.audit('protocol-violation', { sqlstate: '08P01', detail });
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
    this.fatal({ severity: 'FATAL', code: '08006', message: `agentgate: connection "${this.ctx.connection}": ${reason}` });
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    // A client gone mid-statement must not leave the statement running on the server,
    // nor a request for approval open.
    if (this.expect.length > 0 && !this.server.destroyed) this.ctx.cancelUpstream();
    this.hold?.abort.abort('disconnect' satisfies AbortCause);
    for (const e of this.expect) if (e.unit) this.finishUnit(e.unit, e.unit.sqlstate ?? '57014');
    this.expect.length = 0;
    if (!this.server.destroyed) this.server.end(TERMINATE);
    if (!this.client.destroyed) this.client.end();
    setTimeout(() => {
      this.server.destroy();
      this.client.destroy();
    }, 1000).unref();
    this.ctx.metrics.bytesIn.inc(this.bytesIn - this.flushedIn);
    this.ctx.metrics.bytesOut.inc(this.bytesOut - this.flushedOut);
    this.flushAudit();
    this.audit('connection-end', { detail: reason });
    this.onClose?.();
  }

  // --- audit and metrics -------------------------------------------------------------

  private flushedIn = 0;
  private flushedOut = 0;

  private newUnit(sql: string, verdict: Verdict): Unit {
    const parts = verdict.statements?.map(() => ({ rows: 0 }));
    return { sql, verdict, startT: performance.now(), startMs: Date.now(), rows: 0, bytesIn0: this.bytesIn, bytesOut0: this.bytesOut, parts, part: 0 };
  }

  private countStatement(v: Verdict): void {
    const a = v.decision.action;
    (a === 'allow' ? this.ctx.metrics.allowed : a === 'deny' ? this.ctx.metrics.denied : this.ctx.metrics.approve).inc();
  }

  private finishUnit(u: Unit, sqlstate: string | undefined): void {
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

  private flushAudit(): void {
    for (let i = 0; i < this.auditQueue.length; i++) {
      try {
        this.ctx.audit.append(this.auditQueue[i]);
      } catch (err) {
        this.ctx.log.error({ err: (err as Error).message }, 'audit append failed');
      }
    }
    this.auditQueue.length = 0;
  }

  private audit(event: string, extra: { sqlstate?: string; detail?: string } = {}): void {
    const id = this.ctx.identity;
    const now = new Date().toISOString();
    try {
      this.ctx.audit.append({
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
    } catch (err) {
      this.ctx.log.error({ err: (err as Error).message }, 'audit append failed');
    }
  }

  /** Transaction status of the last ReadyForQuery ('I', 'T' or 'E'). */
  get transactionStatus(): string {
    return String.fromCharCode(this.status);
  }
}

/** Text whose reading depends on standard_conforming_strings (`\\`) or client_encoding (non-ASCII). */
const SETTINGS_SENSITIVE = /[\\\u0080-\uffff]/;
const SETTINGS_IN_DOUBT = refusal(
  'session-parameter-pipeline',
  'a pipelined statement may have changed the settings this text is read under',
  'a statement containing a backslash or a non-ASCII character cannot follow an Execute in the same pipeline: the statement before it may change standard_conforming_strings or client_encoding, which the server reports only at the next ReadyForQuery; send a Sync first',
);
const AUDIT_DOWN = refusal('audit-unavailable', 'the audit trail cannot be written', 'the audit trail cannot be written, so no statement is run (fail closed); the sidecar needs attention');

/** Result-column format codes at the end of a Bind message. */
function readBindResultFormats(buf: Buffer, p: number, end: number): number[] {
  const need = (n: number) => {
    if (p + n > end) throw new ProtocolError('invalid Bind message');
  };
  need(2);
  const nParamFormats = buf.readInt16BE(p);
  if (nParamFormats < 0) throw new ProtocolError('invalid Bind message');
  p += 2 + 2 * nParamFormats;
  need(2);
  const nParams = buf.readInt16BE(p);
  if (nParams < 0) throw new ProtocolError('invalid Bind message');
  p += 2;
  for (let i = 0; i < nParams; i++) {
    need(4);
    const len = buf.readInt32BE(p);
    p += 4;
    if (len > 0) {
      need(len);
      p += len;
    }
  }
  need(2);
  const n = buf.readInt16BE(p);
  p += 2;
  if (n < 0 || p + 2 * n !== end) throw new ProtocolError('invalid Bind message');
  if (n === 0) return EMPTY_FORMATS;
  const formats = new Array<number>(n);
  for (let i = 0; i < n; i++) formats[i] = buf.readInt16BE(p + 2 * i);
  return formats;
}
const EMPTY_FORMATS: number[] = [];

/**
 * The parameter values of a Bind (from its parameter-format codes, already validated by
 * readBindResultFormats) as an SQL comment line: `\n-- with $1 = 'x', $2 = NULL`. Text
 * values are quoted as SQL literals; binary ones shown as hex.
 */
function describeBindParams(buf: Buffer, p: number): string {
  const nf = buf.readInt16BE(p);
  const fmts: number[] = [];
  for (let i = 0; i < nf; i++) fmts.push(buf.readInt16BE(p + 2 + 2 * i));
  p += 2 + 2 * nf;
  const n = buf.readInt16BE(p);
  p += 2;
  if (n === 0) return '';
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    const binary = (nf === 1 ? fmts[0] : fmts[i] ?? 0) === 1;
    if (len < 0) parts.push(`$${i + 1} = NULL`);
    else {
      const v = binary ? `'\\x${buf.toString('hex', p, p + len)}'` : `'${buf.toString('utf8', p, p + len).replace(/'/g, "''")}'`;
      parts.push(`$${i + 1} = ${v}`);
      p += len;
    }
  }
  return `\n-- with ${parts.join(', ')}`;
}

function errorCode(buf: Buffer, start: number, end: number): string | undefined {
  let p = start + 5;
  while (p < end && buf[p] !== 0) {
    const code = buf[p];
    const next = skipCString(buf, p + 1, end);
    if (code === 0x43 /* C */) return buf.toString('latin1', p + 1, next - 1);
    p = next;
  }
  return undefined;
}

/** Result formats of two Binds are the same (the common case: the same empty or one-element list). */
function sameFormats(a: number[], b: number[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

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

/**
 * What one input chunk produces for the other socket: runs of frames forwarded as they
 * are leave as subarrays of the chunk (no copy; the whole chunk when nothing changed),
 * replacement frames in between, all in one write. Reused for every chunk.
 */
class Outbox {
  readonly out: Buffer[] = [];
  private runStart = 0;
  private lastEnd = 0;

  reset(): void {
    this.out.length = 0;
    this.runStart = 0;
    this.lastEnd = 0;
  }

  /** `rep`: undefined forwards the frame [start, end) as it is, a Buffer replaces it, null drops it. */
  frame(rep: Buffer | null | undefined, buf: Buffer, start: number, end: number): void {
    if (rep !== undefined) {
      if (start > this.runStart) this.out.push(buf.subarray(this.runStart, start));
      if (rep !== null) this.out.push(rep);
      this.runStart = end;
    }
    this.lastEnd = end;
  }

  /** Adds the last untouched run of `data` (the buffer the frames were read from); true when there is anything to write. */
  finish(data: Buffer): boolean {
    if (this.lastEnd > this.runStart) this.out.push(this.runStart === 0 && this.lastEnd === data.length ? data : data.subarray(this.runStart, this.lastEnd));
    return this.out.length > 0;
  }
}
