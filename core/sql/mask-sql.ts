// Statement text for the audit log. Two passes:
//  1. every literal PAN is masked (same length, so error positions still point at the
//     right character), with the policy's `masking.pan` (last4 by default);
//  2. literals given to card-data columns (cvv, cvc, pin, track data… — the masker's card
//     field list, compared the same way: case-insensitive, `_` and `-` ignored) are starred
//     whole, because sensitive authentication data must never be stored, logs included:
//       INSERT INTO p (pan, cvv) VALUES (…, '123')   UPDATE p SET cvv = '123'
//       … WHERE cvv = '123'   … WHERE pin IN ('1234', '5678')   ON CONFLICT … SET cvv = '1'
//     Pass 2 reads the statement's parse tree, so it only runs when the text mentions a card
//     field name at all and the parser is loaded. A literal whose column the text does not
//     name (`INSERT INTO p VALUES (…)` without a column list) cannot be tied to a column and
//     is left as written (PANs in it are still masked by pass 1).

import { scanSync } from 'libpg-query';
import { maskText } from '../mask/text.js';
import { DEFAULT_CARD_FIELDS, normalizeFieldName, type KeepMode } from '../mask/options.js';
import { parseSql, sqlParserLoaded, type AstNode } from './parser.js';

export interface SqlMaskOptions {
  keep?: KeepMode;
  /** Extra card-data field names beside the masker's built-in list (policy `masking.fields`). */
  cardFields?: readonly string[];
}

export function maskSqlText(sql: string, opts: SqlMaskOptions = {}): string {
  const masked = maskText(sql, opts.keep ? { keep: opts.keep } : undefined);
  const fields = new Set([...DEFAULT_CARD_FIELDS, ...(opts.cardFields ?? [])].map(normalizeFieldName));
  if (!sqlParserLoaded() || !mentionsAny(masked, fields)) return masked;
  try {
    return starCardLiterals(masked, fields);
  } catch {
    // A tree too deep to walk: keep pass 1's text rather than lose the event.
    return masked;
  }
}

function mentionsAny(sql: string, fields: ReadonlySet<string>): boolean {
  const norm = normalizeFieldName(sql);
  for (const f of fields) if (norm.includes(f)) return true;
  return false;
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

/** The column a ColumnRef names (its last field), normalised; undefined for `*` or non-columns. */
function columnName(node: unknown): string | undefined {
  if (!isObj(node) || !isObj(node.ColumnRef) || !Array.isArray(node.ColumnRef.fields)) return undefined;
  const last = node.ColumnRef.fields[node.ColumnRef.fields.length - 1];
  const s = isObj(last) && isObj(last.String) ? last.String.sval : undefined;
  return typeof s === 'string' ? normalizeFieldName(s) : undefined;
}

function cardLiteralLocations(tree: AstNode[], fields: ReadonlySet<string>): Set<number> {
  const out = new Set<number>();
  const add = (n: unknown) => {
    const at = literalAt(n);
    if (at !== undefined) out.add(at);
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
  return out;
}

function starCardLiterals(sql: string, fields: ReadonlySet<string>): string {
  const parsed = parseSql(sql);
  if (!parsed.ok) return sql;
  const locations = cardLiteralLocations(parsed.statements.map((s) => s.stmt), fields);
  if (locations.size === 0) return sql;
  // Locations and token offsets are UTF-8 byte offsets.
  const buf = Buffer.from(sql, 'utf8');
  const tokens = scanSync(sql).tokens;
  const pieces: string[] = [];
  let from = 0;
  for (let i = 0; i < tokens.length; i++) {
    let t = tokens[i];
    if (!locations.has(t.start)) continue;
    // A negative number's location is its minus sign.
    if (t.text === '-' && tokens[i + 1]) t = tokens[++i];
    const [open, body, close] = splitLiteral(buf.subarray(t.start, t.end).toString('utf8'));
    pieces.push(buf.subarray(from, t.start).toString('utf8'), open, '*'.repeat([...body].length), close);
    from = t.end;
  }
  pieces.push(buf.subarray(from).toString('utf8'));
  return pieces.join('');
}

/** `E'abc'` → [`E'`, `abc`, `'`]; `$x$abc$x$` → [`$x$`, `abc`, `$x$`]; `123` → [``, `123`, ``]. */
function splitLiteral(tok: string): [string, string, string] {
  if (tok.startsWith('$')) {
    const end = tok.indexOf('$', 1);
    const tag = tok.slice(0, end + 1);
    if (end > 0 && tok.length >= 2 * tag.length && tok.endsWith(tag)) return [tag, tok.slice(tag.length, tok.length - tag.length), tag];
  }
  const q = tok.indexOf("'");
  if (q >= 0 && tok.endsWith("'") && tok.length > q + 1) return [tok.slice(0, q + 1), tok.slice(q + 1, -1), "'"];
  return ['', tok, ''];
}
