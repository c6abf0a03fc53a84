// Which result columns of a statement are computed from card data the policy stars
// whole (`spec.masking.columns`, JSON card-data keys), read from the parse tree. The
// server reports a column's table and attribute only for a plain column reference;
// `cvv || ''`, `ARRAY[cvv]`, `upper(c.cvv)`, `doc->>'cvv'` and a subquery's renamed
// expression carry no origin, so the masker learns them here. An output is derived
// when its expression mentions a starred column of a table in scope (through
// subqueries, CTEs, joins and set operations), a whole row of such a table inside an
// expression, or a string naming a card-data key (a JSON path). Over-approximate on
// purpose: starring one harmless column is the cheap mistake.

import type { AstNode } from './parser.js';

export interface StarredColumn {
  schema?: string;
  table: string;
  column: string;
}

export interface StarredNames {
  columns: readonly StarredColumn[];
  /** Card-data JSON keys, normalized (lower case, `_` and `-` dropped). */
  cardFields: ReadonlySet<string>;
  /** A table's column names in order, to expand `*` (undefined: unknown, positions are then unknown too). */
  tableColumns?(schema: string | undefined, table: string): readonly string[] | undefined;
}

/** The outputs of a statement: by position, and the names of starred ones (for `*` expansions whose width is unknown). */
export interface StarredOutputs {
  /** Per target, whether it is derived; undefined when a `*` makes positions unknown. */
  byIndex?: boolean[];
  /** Output names of derived columns (as the server names them in RowDescription). */
  names: Set<string>;
}

/** One relation in scope: the names it answers to and which of its columns are starred. */
interface ScopeEntry {
  names: string[];
  starred: Set<string>;
  /** A table (RangeVar) row type is a composite the masker walks itself. */
  table: boolean;
  /** Output columns in order, when known (expands `*`). */
  columns?: readonly string[];
}

type Obj = Record<string, unknown>;

/** The derived outputs of a statement (SELECT, DECLARE, PREPARE, COPY (query), EXPLAIN-free DML RETURNING), or undefined when it returns no rows. */
export function starredOutputs(stmt: AstNode, names: StarredNames): StarredOutputs | undefined {
  const [kind, body] = Object.entries(stmt)[0] ?? [];
  const b = body as Obj | undefined;
  if (!b) return undefined;
  switch (kind) {
    case 'SelectStmt':
      return selectOutputs(b, [], names, new Map());
    case 'DeclareCursorStmt':
    case 'PrepareStmt':
    case 'CopyStmt':
    case 'ExplainStmt':
      return b.query ? starredOutputs(b.query as AstNode, names) : undefined;
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt': {
      // PostgreSQL 18's tree (libpg-query) has returningClause.exprs; older ones returningList.
      const list = (b.returningList ?? (b.returningClause as Obj | undefined)?.exprs) as AstNode[] | undefined;
      if (!list?.length) return undefined;
      const scope = [entryForRangeVar(b.relation as Obj, names, new Map())];
      for (const f of (b.fromClause ?? b.usingClause ?? []) as AstNode[]) scope.push(...fromEntries(f, [], names, new Map()));
      return targets(list, [scope], names, new Map());
    }
    default:
      return undefined;
  }
}

type Ctes = Map<string, StarredOutputs & { outNames: string[] }>;

function selectOutputs(s: Obj, outer: ScopeEntry[][], names: StarredNames, ctes0: Ctes): StarredOutputs & { outNames: string[] } {
  const ctes = new Map(ctes0);
  const w = s.withClause as Obj | undefined;
  for (const c of (w?.ctes ?? []) as AstNode[]) {
    const cte = c.CommonTableExpr as Obj | undefined;
    const q = cte?.ctequery as AstNode | undefined;
    if (!cte || !q?.SelectStmt) continue;
    const inner = selectOutputs(q.SelectStmt as Obj, outer, names, ctes);
    const aliases = ((cte.aliascolnames ?? []) as AstNode[]).map(str);
    ctes.set(String(cte.ctename), { ...inner, outNames: inner.outNames.map((n, i) => aliases[i] ?? n) });
  }
  if (s.op && s.op !== 'SETOP_NONE') {
    const l = selectOutputs(s.larg as Obj, outer, names, ctes);
    const r = selectOutputs(s.rarg as Obj, outer, names, ctes);
    const byIndex = l.byIndex && r.byIndex ? l.byIndex.map((v, i) => v || (r.byIndex![i] ?? false)) : undefined;
    // A set operation's columns are named by its left side.
    const derived = new Set([...l.names]);
    if (r.byIndex) r.byIndex.forEach((v, i) => v && l.outNames[i] !== undefined && derived.add(l.outNames[i]));
    return { byIndex, names: derived, outNames: l.outNames };
  }
  const scope: ScopeEntry[] = [];
  for (const f of (s.fromClause ?? []) as AstNode[]) scope.push(...fromEntries(f, outer, names, ctes));
  if (s.valuesLists) {
    const rows = (s.valuesLists as AstNode[]).map((r) => ((r.List as Obj | undefined)?.items ?? []) as AstNode[]);
    const width = rows[0]?.length ?? 0;
    const byIndex = Array.from({ length: width }, (_, i) => rows.some((r) => r[i] !== undefined && derivedExpr(r[i], [scope, ...outer], names, ctes, false)));
    const outNames = byIndex.map((_, i) => `column${i + 1}`);
    return { byIndex, names: new Set(outNames.filter((_, i) => byIndex[i])), outNames };
  }
  return targets((s.targetList ?? []) as AstNode[], [scope, ...outer], names, ctes);
}

function targets(list: AstNode[], scopes: ScopeEntry[][], names: StarredNames, ctes: Ctes): StarredOutputs & { outNames: string[] } {
  const byIndex: boolean[] = [];
  const outNames: string[] = [];
  const derived = new Set<string>();
  let known = true;
  for (const t of list) {
    const rt = t.ResTarget as Obj | undefined;
    const val = rt?.val as AstNode | undefined;
    if (!val) continue;
    const ref = val.ColumnRef as Obj | undefined;
    const fields = (ref?.fields ?? []) as AstNode[];
    if (ref && fields.some((f) => 'A_Star' in f)) {
      // `*` / `t.*`: every column of the entries it covers, in order, when their columns are known.
      const q = fields.length > 1 ? str(fields[0]) : undefined;
      for (const e of scopes[0] ?? []) {
        if (q !== undefined && !e.names.includes(q)) continue;
        for (const c of e.starred) derived.add(c);
        if (!e.columns) known = false;
        else
          for (const c of e.columns) {
            byIndex.push(e.starred.has(c));
            outNames.push(c);
          }
      }
      continue;
    }
    const name = rt?.name !== undefined ? String(rt.name) : outputName(val);
    const d = derivedExpr(val, scopes, names, ctes, true);
    byIndex.push(d);
    outNames.push(name);
    if (d) derived.add(name);
  }
  return { byIndex: known ? byIndex : undefined, names: derived, outNames };
}

/** The name PostgreSQL gives an output without an alias (column name, function name, or ?column?). */
function outputName(val: AstNode): string {
  const ref = val.ColumnRef as Obj | undefined;
  if (ref) {
    const f = (ref.fields ?? []) as AstNode[];
    return str(f[f.length - 1]) ?? '?column?';
  }
  const fn = val.FuncCall as Obj | undefined;
  if (fn) {
    const n = (fn.funcname ?? []) as AstNode[];
    return str(n[n.length - 1]) ?? '?column?';
  }
  const tc = val.TypeCast as Obj | undefined;
  if (tc?.arg) {
    const inner = outputName(tc.arg as AstNode);
    if (inner !== '?column?') return inner;
    const names = (((tc.typeName as Obj | undefined)?.names ?? []) as AstNode[]).map(str);
    return names[names.length - 1] ?? '?column?';
  }
  if (val.A_ArrayExpr) return 'array';
  if (val.RowExpr) return 'row';
  return '?column?';
}

function fromEntries(f: AstNode, outer: ScopeEntry[][], names: StarredNames, ctes: Ctes): ScopeEntry[] {
  if (f.RangeVar) return [entryForRangeVar(f.RangeVar as Obj, names, ctes)];
  if (f.JoinExpr) {
    const j = f.JoinExpr as Obj;
    const inner = [...fromEntries(j.larg as AstNode, outer, names, ctes), ...fromEntries(j.rarg as AstNode, outer, names, ctes)];
    const alias = (j.alias as Obj | undefined)?.aliasname;
    if (alias) inner.push({ names: [String(alias)], starred: new Set(inner.flatMap((e) => [...e.starred])), table: false, columns: inner.every((e) => e.columns) ? inner.flatMap((e) => e.columns!) : undefined });
    return inner;
  }
  if (f.RangeSubselect) {
    const r = f.RangeSubselect as Obj;
    const q = r.subquery as AstNode | undefined;
    const alias = r.alias as Obj | undefined;
    if (!q?.SelectStmt) return [];
    const inner = selectOutputs(q.SelectStmt as Obj, outer, names, ctes);
    const aliases = ((alias?.colnames ?? []) as AstNode[]).map(str);
    const starred = new Set<string>();
    inner.outNames.forEach((n, i) => {
      if (inner.byIndex ? inner.byIndex[i] : inner.names.has(n)) starred.add(aliases[i] ?? n);
    });
    if (!inner.byIndex) for (const n of inner.names) starred.add(n);
    const columns = inner.byIndex ? inner.outNames.map((n, i) => aliases[i] ?? n) : undefined;
    return [{ names: alias?.aliasname ? [String(alias.aliasname)] : [], starred, table: false, columns }];
  }
  if (f.RangeFunction) {
    // A set-returning function over starred data (unnest(ARRAY[cvv])): its output is derived.
    const r = f.RangeFunction as Obj;
    const alias = r.alias as Obj | undefined;
    const d = derivedExpr({ List: { items: r.functions } } as AstNode, [[], ...outer], names, ctes, false);
    const cols = ((alias?.colnames ?? []) as AstNode[]).map(str).filter((s): s is string => s !== undefined);
    const fn = ((((r.functions as AstNode[] | undefined)?.[0]?.List as Obj | undefined)?.items as AstNode[] | undefined)?.[0]?.FuncCall as Obj | undefined)?.funcname as AstNode[] | undefined;
    const fname = fn ? str(fn[fn.length - 1]) : undefined;
    const n = alias?.aliasname ? String(alias.aliasname) : fname;
    return d && n ? [{ names: [n], starred: new Set([n, ...cols]), table: false }] : [];
  }
  return [];
}

function entryForRangeVar(rv: Obj, names: StarredNames, ctes: Ctes): ScopeEntry {
  const rel = String(rv.relname ?? '');
  const schema = rv.schemaname !== undefined ? String(rv.schemaname) : undefined;
  const alias = (rv.alias as Obj | undefined)?.aliasname;
  const cte = schema === undefined ? ctes.get(rel) : undefined;
  if (cte) {
    const starred = new Set<string>();
    cte.outNames.forEach((n, i) => {
      if (cte.byIndex ? cte.byIndex[i] : cte.names.has(n)) starred.add(n);
    });
    for (const n of cte.names) starred.add(n);
    return { names: [alias ? String(alias) : rel], starred, table: false, columns: cte.byIndex ? cte.outNames : undefined };
  }
  const starred = new Set<string>();
  for (const c of names.columns) if (c.table === rel && (schema === undefined || c.schema === undefined || c.schema === schema)) starred.add(c.column);
  const aliasCols = ((rv.alias as Obj | undefined)?.colnames ?? []) as AstNode[];
  const columns = names.tableColumns?.(schema, rel);
  // `cards AS c(a, b, …)` renames columns in order: a renamed starred column stays starred.
  if (columns && aliasCols.length)
    aliasCols.forEach((a, i) => {
      const n = str(a);
      if (n !== undefined && columns[i] !== undefined && starred.has(columns[i])) starred.add(n);
    });
  const renamed = columns && aliasCols.length ? columns.map((c, i) => str(aliasCols[i]) ?? c) : columns;
  return { names: [alias ? String(alias) : rel], starred, table: true, columns: renamed };
}

/**
 * True when the expression reads starred data. `top`: the expression is the whole
 * target, where a bare whole-row reference to a table is left to the masker (it walks
 * the table's row type field by field).
 */
function derivedExpr(e: unknown, scopes: ScopeEntry[][], names: StarredNames, ctes: Ctes, top: boolean): boolean {
  if (e === null || typeof e !== 'object') return false;
  if (Array.isArray(e)) return e.some((x) => derivedExpr(x, scopes, names, ctes, false));
  const o = e as Obj;
  const ref = o.ColumnRef as Obj | undefined;
  if (ref) return columnRefDerived((ref.fields ?? []) as AstNode[], scopes, top);
  const sub = o.SubLink as Obj | undefined;
  if (sub) {
    if (derivedExpr(sub.testexpr, scopes, names, ctes, false)) return true;
    const q = sub.subselect as AstNode | undefined;
    if (q?.SelectStmt) {
      const inner = selectOutputs(q.SelectStmt as Obj, scopes, names, ctes);
      return (inner.byIndex?.some(Boolean) ?? false) || inner.names.size > 0;
    }
    return false;
  }
  const c = o.A_Const as Obj | undefined;
  if (c) {
    const s = (c.sval as Obj | undefined)?.sval;
    return typeof s === 'string' && namesCardField(s, names);
  }
  for (const v of Object.values(o)) if (derivedExpr(v, scopes, names, ctes, false)) return true;
  return false;
}

function columnRefDerived(fields: AstNode[], scopes: ScopeEntry[][], top: boolean): boolean {
  const parts = fields.map(str);
  if (parts.some((p) => p === undefined)) return false;
  const last = parts[parts.length - 1]!;
  for (const scope of scopes) {
    if (parts.length >= 2) {
      const q = parts[parts.length - 2]!;
      const e = scope.find((x) => x.names.includes(q));
      if (e) return e.starred.has(last);
    } else {
      if (scope.some((x) => x.starred.has(last))) return true;
      // A whole row: `c`, `cards`, `s` (a subquery) with starred columns.
      const whole = scope.find((x) => x.names.includes(last));
      if (whole) return whole.starred.size > 0 && !(top && whole.table);
    }
  }
  return false;
}

/** A string that names a card-data key: `cvv`, or a JSON path `{card,cvv}` / `$.card.cvv` containing one. */
function namesCardField(s: string, names: StarredNames): boolean {
  // A key or a path only (`cvv`, `{card,cvv}`, `$.card.cvv`): a JSON document literal is masked as JSON instead.
  if (s.length > 200 || !/^[\w\s{},.$[\]*-]*$/.test(s)) return false;
  for (const part of s.split(/[^A-Za-z0-9_-]+/)) {
    if (!part) continue;
    const n = part.replace(/[_-]/g, '').toLowerCase();
    if (names.cardFields.has(n)) return true;
    if (names.columns.some((c) => c.column.toLowerCase() === part.toLowerCase())) return true;
  }
  return false;
}

function str(n: AstNode | undefined): string | undefined {
  const s = (n?.String as Obj | undefined)?.sval;
  return typeof s === 'string' ? s : undefined;
}
