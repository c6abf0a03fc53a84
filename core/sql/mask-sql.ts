// Statement text for the audit log. Two passes:
//  1. every literal PAN is masked (same length, so error positions still point at the
//     right character), with the policy's `masking.pan` (last4 by default);
//  2. literals given to card-data columns (cvv, cvc, pin, track data… — the masker's card
//     field list, compared the same way: case-insensitive, `_` and `-` ignored) are starred
//     whole, because sensitive authentication data must never be stored, logs included:
//       INSERT INTO p (pan, cvv) VALUES (…, '123')   UPDATE p SET cvv = '123'
//       … WHERE cvv = '123'   … WHERE pin IN ('1234', '5678')   ON CONFLICT … SET cvv = '1'
//     A parameter in such a place (`WHERE cvv = $1`) has its value starred in the
//     `-- with $1 = '…'` line the proxy appends for the Bind values it records.
//     Pass 2 reads the statement's parse tree, so it only runs when the text mentions a card
//     field name at all. A literal whose column the text does not name (`INSERT INTO p
//     VALUES (…)` without a column list) cannot be tied to a column and is left as written
//     (PANs in it are still masked by pass 1).
// When the tree cannot be had (the text does not parse, is longer than `parseLimit`, or
// the parser is not loaded) but a card field is named, every literal and comment is
// starred instead: the audit trail never guesses in the agent's favour.

import { maskText } from '../mask/text.js';
import { DEFAULT_CARD_FIELDS, normalizeFieldName, type KeepMode } from '../mask/options.js';
import { parseSql, sqlParserLoaded, type AstNode } from './parser.js';

export interface SqlMaskOptions {
  keep?: KeepMode;
  /** Extra card-data field names beside the masker's built-in list (policy `masking.fields`). */
  cardFields?: readonly string[];
  /** Longer statements (UTF-16 units) are not parsed; their literals are starred if a card field is named. Default 256 KiB. */
  parseLimit?: number;
}

const DEFAULT_PARSE_LIMIT = 256 * 1024;

// Card field sets by the policy's list (its identity): built once, not per statement.
const fieldSets = new WeakMap<readonly string[], ReadonlySet<string>>();
const NO_EXTRA: readonly string[] = [];
function cardFieldSet(extra: readonly string[] = NO_EXTRA): ReadonlySet<string> {
  let set = fieldSets.get(extra);
  if (set === undefined) {
    set = new Set([...DEFAULT_CARD_FIELDS, ...extra].map(normalizeFieldName).filter((f) => f.length > 0));
    fieldSets.set(extra, set);
  }
  return set;
}

export function maskSqlText(sql: string, opts: SqlMaskOptions = {}): string {
  const masked = maskText(sql, opts.keep ? { keep: opts.keep } : undefined);
  const fields = cardFieldSet(opts.cardFields);
  if (!mentionsAny(sql, fields)) return masked;
  if (!sqlParserLoaded() || sql.length > (opts.parseLimit ?? DEFAULT_PARSE_LIMIT)) return starAllLiterals(masked);
  try {
    return starCardLiterals(sql, masked, fields) ?? starAllLiterals(masked);
  } catch {
    // A tree too deep to walk.
    return starAllLiterals(masked);
  }
}

// One pattern per field set (`cvv` → c[_-]*v[_-]*v, case-insensitive): the same test as
// normalising the text and searching each name, without copying every statement.
const mentionPatterns = new WeakMap<ReadonlySet<string>, RegExp>();
function mentionsAny(sql: string, fields: ReadonlySet<string>): boolean {
  let re = mentionPatterns.get(fields);
  if (re === undefined) {
    const alts = [...fields].map((f) => [...f].map((ch) => ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[_-]*'));
    re = new RegExp(alts.length > 0 ? alts.join('|') : '(?!)', 'i');
    mentionPatterns.set(fields, re);
  }
  return re.test(sql);
}

function isObj(v: unknown): v is AstNode {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The byte location of a literal, looking through a cast (`'123'::text`). */
function literalAt(node: unknown): number | undefined {
  if (!isObj(node)) return undefined;
  if (isObj(node.A_Const) && typeof node.A_Const.location === 'number') return node.A_Const.location;
  if (isObj(node.TypeCast)) return literalAt(node.TypeCast.arg);
  return undefined;
}

/** The number of a parameter (`$2` → 2), looking through a cast (`$2::text`). */
function paramAt(node: unknown): number | undefined {
  if (!isObj(node)) return undefined;
  if (isObj(node.ParamRef) && typeof node.ParamRef.number === 'number') return node.ParamRef.number;
  if (isObj(node.TypeCast)) return paramAt(node.TypeCast.arg);
  return undefined;
}

/** The column a ColumnRef names (its last field), normalised; undefined for `*` or non-columns. */
function columnName(node: unknown): string | undefined {
  if (!isObj(node) || !isObj(node.ColumnRef) || !Array.isArray(node.ColumnRef.fields)) return undefined;
  const last = node.ColumnRef.fields[node.ColumnRef.fields.length - 1];
  const s = isObj(last) && isObj(last.String) ? last.String.sval : undefined;
  return typeof s === 'string' ? normalizeFieldName(s) : undefined;
}

/** Byte locations of literals, and numbers of parameters, that stand for card-field values. */
function cardValues(tree: AstNode[], fields: ReadonlySet<string>): { literals: Set<number>; params: Set<number> } {
  const literals = new Set<number>();
  const params = new Set<number>();
  const add = (n: unknown) => {
    const at = literalAt(n);
    if (at !== undefined) literals.add(at);
    const p = paramAt(n);
    if (p !== undefined) params.add(p);
  };
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (!isObj(v)) return;
    // INSERT (cols) VALUES (…), (…)
    if (Array.isArray(v.cols) && isObj(v.selectStmt) && isObj(v.selectStmt.SelectStmt) && Array.isArray(v.selectStmt.SelectStmt.valuesLists)) {
      const cols = v.cols.map((c) => (isObj(c) && isObj(c.ResTarget) && typeof c.ResTarget.name === 'string' ? normalizeFieldName(c.ResTarget.name) : ''));
      for (const row of v.selectStmt.SelectStmt.valuesLists) {
        const items = isObj(row) && isObj(row.List) && Array.isArray(row.List.items) ? row.List.items : [];
        items.forEach((item, i) => {
          if (fields.has(cols[i] ?? '')) add(item);
        });
      }
    }
    // SET col = literal (UPDATE, ON CONFLICT DO UPDATE) and `literal AS col`.
    if (isObj(v.ResTarget) && typeof v.ResTarget.name === 'string' && fields.has(normalizeFieldName(v.ResTarget.name))) add(v.ResTarget.val);
    // col = literal, literal <> col, col IN (…)
    if (isObj(v.A_Expr)) {
      const { lexpr, rexpr } = v.A_Expr;
      const l = columnName(lexpr);
      const r = columnName(rexpr);
      if (l && fields.has(l)) {
        if (isObj(rexpr) && isObj(rexpr.List) && Array.isArray(rexpr.List.items)) rexpr.List.items.forEach(add);
        else add(rexpr);
      }
      if (r && fields.has(r)) add(lexpr);
    }
    for (const k of Object.keys(v)) visit(v[k]);
  };
  visit(tree);
  return { literals, params };
}

/**
 * Stars card-field literals of `sql` in `masked` (its PAN-masked form: same UTF-8
 * length, so the tree's byte offsets hold in both; the tree comes from `sql`, since
 * a masked numeric literal no longer parses). Undefined when `sql` does not parse.
 */
function starCardLiterals(sql: string, masked: string, fields: ReadonlySet<string>): string | undefined {
  const parsed = parseSql(sql);
  if (!parsed.ok) return undefined;
  const { literals, params } = cardValues(parsed.statements.map((s) => s.stmt), fields);
  if (literals.size === 0 && params.size === 0) return masked;
  const src = Buffer.from(sql, 'utf8');
  const spans: Span[] = [];
  for (const at of literals) {
    // A negative number's location is its minus sign.
    let p = at;
    if (src[p] === 0x2d) p = skipSpace(src, p + 1);
    const lit = literalSpan(src, p);
    if (lit !== undefined) spans.push(lit);
  }
  if (params.size > 0) paramValueSpans(src, params, spans);
  return starSpans(Buffer.from(masked, 'utf8'), spans);
}

/** buf with the body of every span replaced by one `*` per character. */
function starSpans(buf: Buffer, spans: Span[]): string {
  if (spans.length === 0) return buf.toString('utf8');
  spans.sort((a, b) => a.bodyStart - b.bodyStart);
  // Bytes copied and filled, one decode at the end (a statement can hold a million literals).
  const out = Buffer.allocUnsafe(buf.length);
  let o = 0;
  let from = 0;
  for (const s of spans) {
    if (s.bodyStart < from) continue;
    o += buf.copy(out, o, from, s.bodyStart);
    const n = charCount(buf, s.bodyStart, s.bodyEnd);
    out.fill(0x2a, o, o + n);
    o += n;
    from = s.bodyEnd;
  }
  o += buf.copy(out, o, from);
  return out.toString('utf8', 0, o);
}

/** UTF-8 characters in b[s, e): every byte that is not a continuation byte. */
function charCount(b: Uint8Array, s: number, e: number): number {
  let n = 0;
  for (let p = s; p < e; p++) if ((b[p] & 0xc0) !== 0x80) n++;
  return n;
}

/** `-- with $1 = '…', $2 = NULL` (the proxy's record of Bind values): the values of `params`. */
function paramValueSpans(src: Buffer, params: ReadonlySet<number>, spans: Span[]): void {
  const marker = src.lastIndexOf('\n-- with ');
  if (marker < 0) return;
  let p = marker + 9;
  while (p < src.length) {
    if (src[p] !== 0x24) return;
    let n = 0;
    p++;
    while (src[p] >= 0x30 && src[p] <= 0x39) n = n * 10 + (src[p++] - 0x30);
    if (src[p] !== 0x20 || src[p + 1] !== 0x3d || src[p + 2] !== 0x20) return;
    p += 3;
    if (src[p] === 0x27) {
      const lit = literalSpan(src, p);
      if (lit === undefined) return;
      if (params.has(n)) spans.push(lit);
      p = lit.end;
    } else if (src.toString('latin1', p, p + 4) === 'NULL') p += 4;
    else return;
    if (src[p] !== 0x2c) return;
    p += 2;
  }
}

function skipSpace(b: Uint8Array, p: number): number {
  while (p < b.length && (b[p] === 0x20 || b[p] === 0x09 || b[p] === 0x0a || b[p] === 0x0d || b[p] === 0x0c)) p++;
  return p;
}

const isIdent = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x24 || c >= 0x80;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

interface Span {
  bodyStart: number;
  bodyEnd: number;
  end: number;
}

/**
 * The literal starting at b[p] (PostgreSQL's lexical rules with standard_conforming_strings
 * on): '…' with '' inside, E'…' with backslash escapes, B'…' X'…' N'…' U&'…', $tag$…$tag$,
 * and numbers. An unterminated one runs to the end. Undefined when b[p] starts none.
 */
function literalSpan(b: Uint8Array, p: number): Span | undefined {
  const c = b[p];
  const lower = c | 0x20;
  if (c === 0x27) return quoted(b, p + 1, false);
  if ((lower === 0x65) && b[p + 1] === 0x27) return quoted(b, p + 2, true);
  if ((lower === 0x62 || lower === 0x78 || lower === 0x6e) && b[p + 1] === 0x27) return quoted(b, p + 2, false);
  if (lower === 0x75 && b[p + 1] === 0x26 && b[p + 2] === 0x27) return quoted(b, p + 3, false);
  if (c === 0x24) {
    let q = p + 1;
    while (q < b.length && isIdent(b[q]) && b[q] !== 0x24 && !(q === p + 1 && isDigit(b[q]))) q++;
    if (b[q] !== 0x24) return undefined;
    const tag = b.subarray(p, q + 1);
    const close = Buffer.from(b.buffer, b.byteOffset, b.byteLength).indexOf(tag, q + 1);
    return close < 0 ? { bodyStart: q + 1, bodyEnd: b.length, end: b.length } : { bodyStart: q + 1, bodyEnd: close, end: close + tag.length };
  }
  if (isDigit(c) || (c === 0x2e && isDigit(b[p + 1]))) {
    let q = p;
    const radix = c === 0x30 ? b[p + 1] | 0x20 : 0;
    if (radix === 0x78 || radix === 0x6f || radix === 0x62) {
      // 0x1F, 0o17, 0b101 (PostgreSQL 16+; a digit run either way)
      q += 2;
      while (q < b.length && (isIdent(b[q]) && b[q] !== 0x24)) q++;
    } else {
      while (isDigit(b[q]) || b[q] === 0x5f) q++;
      if (b[q] === 0x2e) {
        q++;
        while (isDigit(b[q]) || b[q] === 0x5f) q++;
      }
      if ((b[q] | 0x20) === 0x65) {
        let e = q + 1;
        if (b[e] === 0x2b || b[e] === 0x2d) e++;
        if (isDigit(b[e])) {
          q = e;
          while (isDigit(b[q])) q++;
        }
      }
    }
    return { bodyStart: p, bodyEnd: q, end: q };
  }
  return undefined;
}

function quoted(b: Uint8Array, q: number, backslash: boolean): Span {
  const start = q;
  while (q < b.length) {
    const c = b[q];
    if (backslash && c === 0x5c) q += 2;
    else if (c === 0x27) {
      if (b[q + 1] === 0x27) q += 2;
      else return { bodyStart: start, bodyEnd: q, end: q + 1 };
    } else q++;
  }
  return { bodyStart: start, bodyEnd: b.length, end: b.length };
}

/**
 * Every literal's content and every comment starred (delimiters kept): for statements
 * whose tree cannot be had but that name a card field. Identifiers and keywords stay,
 * so the record still says what kind of statement it was. One pass, written as it
 * goes: such a statement may be megabytes with a literal every few bytes.
 */
export function starAllLiterals(sql: string): string {
  const b = Buffer.from(sql, 'utf8');
  const out = Buffer.allocUnsafe(b.length);
  let o = 0;
  let changed = false;
  // Copies b[s, e) as it is, then b[e, bodyEnd) as one star per character.
  const emit = (s: number, e: number, bodyEnd: number) => {
    for (let i = s; i < e; i++) out[o++] = b[i];
    for (let i = e; i < bodyEnd; i++) if ((b[i] & 0xc0) !== 0x80) out[o++] = 0x2a;
    if (bodyEnd > e) changed = true;
  };
  let p = 0;
  while (p < b.length) {
    const c = b[p];
    if (c === 0x22) {
      // "quoted identifier": not data.
      let q = p + 1;
      while (q < b.length && !(b[q] === 0x22 && b[q + 1] !== 0x22)) q += b[q] === 0x22 ? 2 : 1;
      q = Math.min(q + 1, b.length);
      emit(p, q, q);
      p = q;
      continue;
    }
    if (c === 0x2d && b[p + 1] === 0x2d) {
      let q = p + 2;
      while (q < b.length && b[q] !== 0x0a) q++;
      emit(p, p + 2, q);
      p = q;
      continue;
    }
    if (c === 0x2f && b[p + 1] === 0x2a) {
      let depth = 1;
      let q = p + 2;
      while (q < b.length && depth > 0) {
        if (b[q] === 0x2f && b[q + 1] === 0x2a) {
          depth++;
          q += 2;
        } else if (b[q] === 0x2a && b[q + 1] === 0x2f) {
          depth--;
          q += 2;
        } else q++;
      }
      const bodyEnd = depth === 0 ? q - 2 : q;
      emit(p, p + 2, bodyEnd);
      emit(bodyEnd, q, q);
      p = q;
      continue;
    }
    // A literal starts at a non-identifier boundary (`x1` is a name, `E'…'` a literal).
    if (p === 0 || !isIdent(b[p - 1])) {
      const lit = literalSpan(b, p);
      if (lit !== undefined) {
        emit(p, lit.bodyStart, lit.bodyEnd);
        emit(lit.bodyEnd, lit.end, lit.end);
        p = Math.max(lit.end, p + 1);
        continue;
      }
    }
    if (c === 0x24 && isDigit(b[p + 1])) {
      // $1: a parameter, not a literal.
      let q = p + 2;
      while (isDigit(b[q])) q++;
      emit(p, q, q);
      p = q;
      continue;
    }
    out[o++] = c;
    p++;
  }
  return changed ? out.toString('utf8', 0, o) : sql;
}
