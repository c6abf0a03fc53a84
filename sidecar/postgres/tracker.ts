// The proxy's model of one PostgreSQL conversation, without I/O: which prepared
// statements and portals exist on the server, which answers the server still owes
// (in the order it will send them), and whether it is skipping messages after an error.
//
// The model changes only on the server's word: a statement exists once its
// ParseComplete arrives, a portal once its BindComplete arrives, either is gone once its
// CloseComplete arrives. An ErrorResponse to an extended-protocol message makes the
// server discard everything up to the next Sync, so the messages queued behind the
// failed one are retired without effect.
//
// A client message is read against the state the server will have when it gets there.
// Inside one batch (up to Sync) that state is exact if every earlier message of the
// batch is assumed to succeed: should one fail, the server skips this message too.
// Across a batch boundary it is not: whether the earlier batch succeeded is not yet
// known, so a name touched there answers WAIT and the session pauses until the server
// has answered. Names the proxy has no record of — SQL-level PREPARE and DECLARE, and
// every name after DEALLOCATE or DISCARD — answer UNKNOWN: the session refuses them.

import type { Verdict } from './decide.js';
import type { ColumnInfo, RowPlan } from './result-mask.js';
import { parseSql } from '../../core/sql/parser.js';

/** What a queued expectation answers: the message that was forwarded to the server. */
export const enum K {
  Query,
  Parse,
  Bind,
  DescribeStmt,
  DescribePortal,
  Execute,
  CloseStmt,
  ClosePortal,
  Sync,
  Function,
  /** A message the proxy sent in place of a refused one: the server answers it with one ErrorResponse. */
  Refusal,
}

/** Bits of `effects`: a statement that runs SQL-level commands on the server's name spaces. */
export const EFFECT_STATEMENTS = 1; // PREPARE, DEALLOCATE, DISCARD ALL
export const EFFECT_PORTALS = 2; // DECLARE, CLOSE, DISCARD ALL

export interface Stmt {
  sql: string;
  verdict: Verdict;
  /** SQL-level name-space commands the statement runs (EFFECT_*). */
  effects: number;
  fields?: ColumnInfo[];
  /** The Execute-time verdict and the policy object it was decided under: a hot reload swaps that object, which re-decides. */
  decidedBy?: object;
  executeVerdict?: Verdict;
  /** The portal record of its last Bind without approval parameters: rebinding with the same formats reuses it (and its row plan). */
  lastPortal?: Portal;
}

export interface Portal {
  stmt: Stmt;
  formats: number[];
  plan?: RowPlan;
  /** The bound parameter values, spelled out, for a statement that needs approval. */
  params?: string;
}

export interface Expect<U = unknown> {
  k: K;
  /** Statement name (Parse, DescribeStmt, CloseStmt) or portal name (Bind, DescribePortal, Execute, ClosePortal). */
  name: string;
  /** Parse: the statement installed on ParseComplete (none for a refused Parse); DescribeStmt: the statement described. */
  stmt?: Stmt;
  /** Bind: the portal installed on BindComplete; DescribePortal, Execute: the portal used. */
  portal?: Portal;
  /** Added by the proxy: its answer is kept from the client. */
  own?: boolean;
  /** SQL-level name-space commands this Query or Execute runs (EFFECT_*). */
  effects: number;
  /** The session's record for audit. */
  unit?: U;
  plan?: RowPlan;
  /** Set once the server has answered it or skipped it. */
  done?: boolean;
}

export const ABSENT = 'absent';
export const UNKNOWN = 'unknown';
export const WAIT = 'wait';
export type Lookup<T> = T | typeof ABSENT | typeof UNKNOWN | typeof WAIT;

/** Thrown when the server's answer does not fit what the proxy sent: the session closes (fail closed). */
export class Desync extends Error {
  override name = 'Desync';
}

const isBoundary = (k: K): boolean => k === K.Sync || k === K.Query || k === K.Function;
/** Sent to the server as a simple Query (a refused FunctionCall is a Query of a marker). */
const isSimple = (k: K): boolean => k === K.Query || k === K.Function;
/** Messages whose ErrorResponse puts the server into skip-until-Sync (postgres.c: doing_extended_query_message). */
const isExtended = (k: K): boolean => k !== K.Query && k !== K.Function && k !== K.Sync;

export class Tracker<U = unknown> {
  /** Forwarded messages the server has not answered yet, oldest first. */
  readonly pending: Expect<U>[] = [];
  /** The server is discarding messages until the client's next Sync (it answered an error and no Sync is queued). */
  skipping = false;
  /** Transaction status of the last ReadyForQuery ('I', 'T' or 'E'). */
  status = 0x49;
  private readonly statements = new Map<string, Stmt | typeof ABSENT>();
  private readonly portals = new Map<string, Portal | typeof ABSENT>();
  /** What a named statement or portal the map does not hold is: ABSENT until SQL-level commands made names unknowable. */
  private stmtDefault: typeof ABSENT | typeof UNKNOWN = ABSENT;
  private portalDefault: typeof ABSENT | typeof UNKNOWN = ABSENT;

  get head(): Expect<U> | undefined {
    return this.pending[0];
  }

  push(e: Expect<U>): Expect<U> {
    this.pending.push(e);
    return e;
  }

  /** The last batch boundary still unanswered (what a pause waits for), if any. */
  lastBoundary(): Expect<U> | undefined {
    for (let i = this.pending.length - 1; i >= 0; i--) if (isBoundary(this.pending[i].k)) return this.pending[i];
    return undefined;
  }

  /** The statement `name` as the server will see it when the next forwarded message reaches it. */
  statement(name: string): Lookup<Stmt> {
    let crossed = false;
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const e = this.pending[i];
      if (isBoundary(e.k)) crossed = true;
      let r: Lookup<Stmt> | undefined;
      if (e.k === K.Parse && e.name === name && (e.stmt || name === '')) r = e.stmt ?? ABSENT;
      else if (e.k === K.CloseStmt && e.name === name) r = ABSENT;
      else if (isSimple(e.k) && name === '') r = ABSENT;
      else if (e.effects & EFFECT_STATEMENTS && name !== '') r = UNKNOWN;
      if (r !== undefined) return crossed ? WAIT : r;
    }
    return this.confirmedStatement(name);
  }

  /** The portal `name` as the server will see it when the next forwarded message reaches it. */
  portal(name: string): Lookup<Portal> {
    let crossed = false;
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const e = this.pending[i];
      if (isBoundary(e.k)) crossed = true;
      let r: Lookup<Portal> | undefined;
      if (e.k === K.Bind && e.name === name) r = e.portal!;
      else if (e.k === K.ClosePortal && e.name === name) r = ABSENT;
      else if (isSimple(e.k) && name === '') r = ABSENT;
      else if (e.effects & EFFECT_PORTALS && name !== '') r = UNKNOWN;
      if (r !== undefined) return crossed ? WAIT : r;
    }
    const r = this.confirmedPortal(name);
    // A transaction that ends at an unanswered boundary drops every portal.
    return crossed && typeof r !== 'string' ? WAIT : r;
  }

  private confirmedStatement(name: string): Stmt | typeof ABSENT | typeof UNKNOWN {
    return this.statements.get(name) ?? (name === '' ? ABSENT : this.stmtDefault);
  }

  private confirmedPortal(name: string): Portal | typeof ABSENT | typeof UNKNOWN {
    return this.portals.get(name) ?? (name === '' ? ABSENT : this.portalDefault);
  }

  // --- the server's answers ----------------------------------------------------------

  /**
   * ParseComplete, BindComplete, CloseComplete, NoData, RowDescription/NoData after a
   * Describe, and CommandComplete/EmptyQueryResponse/PortalSuspended of an Execute:
   * the head succeeded. Returns it.
   */
  complete(expected: K | K[]): Expect<U> {
    const e = this.pending[0];
    if (!e || (typeof expected === 'number' ? e.k !== expected : !expected.includes(e.k))) {
      throw new Desync(`the server answered a message the proxy did not send (expected ${describeK(expected)}, next is ${e ? describeK(e.k) : 'nothing'})`);
    }
    this.pending.shift();
    switch (e.k) {
      case K.Parse:
        if (!e.stmt) throw new Desync('the server accepted a Parse the proxy refused');
        this.statements.set(e.name, e.stmt);
        break;
      case K.Bind:
        this.portals.set(e.name, e.portal!);
        break;
      case K.CloseStmt:
        this.forgetStatement(e.name);
        break;
      case K.ClosePortal:
        this.forgetPortal(e.name);
        break;
      default:
        break;
    }
    this.retired(e);
    return e;
  }

  /**
   * An ErrorResponse. The head failed; after an extended-protocol message the server
   * skips everything up to Sync. Returns every expectation retired, the failed one first.
   */
  error(): Expect<U>[] {
    const e = this.pending[0];
    if (!e) return [];
    if (e.k === K.Query || e.k === K.Function || e.k === K.Sync) return []; // answered at ReadyForQuery
    this.pending.shift();
    // A Parse of the unnamed statement drops the old one before parsing; a Bind may have created its portal before failing.
    if (e.k === K.Parse && e.name === '') this.statements.delete('');
    else if (e.k === K.Bind) this.portals.delete(e.name);
    this.retired(e);
    const out = [e];
    if (!isExtended(e.k)) return out;
    while (this.pending.length && this.pending[0].k !== K.Sync) {
      const s = this.pending.shift()!;
      this.retired(s);
      out.push(s);
    }
    if (this.pending.length === 0) this.skipping = true;
    return out;
  }

  /** ReadyForQuery: everything up to and including the Sync or Query it ends is answered. */
  ready(status: number): Expect<U>[] {
    this.status = status;
    const out: Expect<U>[] = [];
    if (!this.pending.some((e) => isBoundary(e.k))) throw new Desync('the server is ready for a query the proxy did not send');
    while (this.pending.length) {
      const e = this.pending.shift()!;
      if (isSimple(e.k)) {
        // A simple query replaces the unnamed statement and portal, and leaves neither.
        this.statements.delete('');
        this.portals.delete('');
      }
      this.retired(e);
      out.push(e);
      if (isBoundary(e.k)) break;
    }
    // Out of a transaction, no protocol-level portal exists (only WITH HOLD cursors, which SQL made).
    if (status === 0x49) for (const [name, p] of this.portals) if (p !== ABSENT) this.portals.delete(name);
    return out;
  }

  /**
   * The proxy sent a message that fails for certain (a refusal marker) in the extended
   * protocol: the server skips everything after it up to Sync, as after its own error.
   */
  willFail(e: Expect<U>): void {
    this.pending.push(e);
    this.skipping = true;
  }

  /** The client sent Sync: the server stops skipping there. */
  synced(): void {
    this.skipping = false;
  }

  private retired(e: Expect<U>): void {
    e.done = true;
    if (e.effects & EFFECT_STATEMENTS) {
      for (const name of this.statements.keys()) if (name !== '') this.statements.delete(name);
      this.stmtDefault = UNKNOWN;
    }
    if (e.effects & EFFECT_PORTALS) {
      for (const name of this.portals.keys()) if (name !== '') this.portals.delete(name);
      this.portalDefault = UNKNOWN;
    }
  }

  private forgetStatement(name: string): void {
    if (name !== '' && this.stmtDefault === UNKNOWN) this.statements.set(name, ABSENT);
    else this.statements.delete(name);
  }

  private forgetPortal(name: string): void {
    if (name !== '' && this.portalDefault === UNKNOWN) this.portals.set(name, ABSENT);
    else this.portals.delete(name);
  }
}

function describeK(k: K | K[]): string {
  if (Array.isArray(k)) return k.map(describeK).join(' or ');
  return ['Query', 'Parse', 'Bind', 'Describe (statement)', 'Describe (portal)', 'Execute', 'Close (statement)', 'Close (portal)', 'Sync', 'FunctionCall', 'refusal'][k] ?? String(k);
}

/** Words that start the SQL commands acting on the server's statement and portal name spaces. */
const NAMESPACE_WORD = /\b(?:prepare|deallocate|discard|declare|close)\b/i;

/**
 * The SQL-level name-space commands a statement text runs (EFFECT_*). Text without any
 * of their keywords runs none (the common case, one regex test); other text is parsed,
 * and text that does not parse counts as running all (fail closed).
 */
export function namespaceEffects(sql: string): number {
  if (!NAMESPACE_WORD.test(sql)) return 0;
  if (sql.length > 65536) return parseEffects(sql);
  let fx = EFFECTS_SEEN.get(sql);
  if (fx === undefined) {
    fx = parseEffects(sql);
    // A repeated simple query is parsed once; the map is small and starts over when full.
    if (EFFECTS_SEEN.size >= 512) EFFECTS_SEEN.clear();
    EFFECTS_SEEN.set(sql, fx);
  }
  return fx;
}
const EFFECTS_SEEN = new Map<string, number>();

function parseEffects(sql: string): number {
  let parsed: ReturnType<typeof parseSql>;
  try {
    parsed = parseSql(sql);
  } catch {
    return EFFECT_STATEMENTS | EFFECT_PORTALS;
  }
  if (!parsed.ok) return EFFECT_STATEMENTS | EFFECT_PORTALS;
  let fx = 0;
  for (const s of parsed.statements) {
    const type = Object.keys(s.stmt)[0];
    if (type === 'PrepareStmt' || type === 'DeallocateStmt') fx |= EFFECT_STATEMENTS;
    else if (type === 'DeclareCursorStmt' || type === 'ClosePortalStmt') fx |= EFFECT_PORTALS;
    else if (type === 'DiscardStmt') fx |= EFFECT_STATEMENTS | EFFECT_PORTALS;
  }
  return fx;
}
