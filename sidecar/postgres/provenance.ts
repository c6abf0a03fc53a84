// Result columns derived from starred card data, for the row plan: the statement's
// parse tree (core/sql/starred-outputs) says which outputs are computed from a
// `spec.masking.columns` column or name a card-data JSON key. Parsed only when the
// statement text mentions one of those names (a substring test), and remembered per
// text, so statements that cannot touch starred data cost one scan of their text.

import { parseSql, sqlParserLoaded } from '../../core/sql/parser.js';
import { starredOutputs } from '../../core/sql/starred-outputs.js';
import type { StarredNames } from '../../core/sql/starred-outputs.js';
import { DEFAULT_CARD_FIELDS, normalizeFieldName } from '../../core/mask/index.js';
import { MaskingCatalog } from './value-types.js';
import type { ColumnInfo } from './result-mask.js';

interface Prepared {
  names: StarredNames;
  /** Lower-case words whose presence in a statement makes it worth parsing. */
  words: string[];
  cache: Map<string, ReturnType<typeof starredOutputs> | null>;
}

const prepared = new WeakMap<MaskingCatalog, Prepared>();
const CACHE_MAX = 512;
/** Statements longer than this are not parsed again here (the classifier bounds them anyway). */
const MAX_SQL = 64 * 1024;

function prepare(cat: MaskingCatalog): Prepared {
  let p = prepared.get(cat);
  if (p) return p;
  const cardFields = new Set([...DEFAULT_CARD_FIELDS, ...cat.cardFields].map(normalizeFieldName));
  const names: StarredNames = {
    columns: cat.columns,
    cardFields,
    tableColumns: (schema, table) => cat.types.relation(schema, table)?.columns.map((c) => c.name),
  };
  const words = [...new Set([...cat.columns.map((c) => c.column.toLowerCase()), ...[...DEFAULT_CARD_FIELDS, ...cat.cardFields].map((f) => f.toLowerCase())])];
  p = { names, words, cache: new Map() };
  prepared.set(cat, p);
  return p;
}

/**
 * Per column of `cols`, whether it is derived from starred data, for statement `part`
 * (0-based, in a multi-statement Query) of `sql`; undefined when none is or nothing is known.
 */
export function derivedColumns(sql: string | undefined, part: number, starred: ReadonlySet<string>, cols: readonly ColumnInfo[]): boolean[] | undefined {
  if (sql === undefined || !(starred instanceof MaskingCatalog) || sql.length > MAX_SQL || !sqlParserLoaded()) return undefined;
  const p = prepare(starred);
  const lower = sql.toLowerCase();
  if (!p.words.some((w) => lower.includes(w))) return undefined;
  const key = `${part}\0${sql}`;
  let out = p.cache.get(key);
  if (out === undefined) {
    const parsed = parseSql(sql);
    const stmt = parsed.ok ? parsed.statements[part]?.stmt : undefined;
    out = (stmt && starredOutputs(stmt, p.names)) ?? null;
    if (p.cache.size >= CACHE_MAX) p.cache.clear();
    p.cache.set(key, out);
  }
  if (!out) return undefined;
  const byIndex = out.byIndex && out.byIndex.length === cols.length ? out.byIndex : cols.map((c) => c.name !== undefined && out!.names.has(c.name));
  return byIndex.some(Boolean) ? byIndex : undefined;
}

/** The same for a COPY: positions only (COPY says no column names). */
export function derivedCopyColumns(sql: string | undefined, part: number, starred: ReadonlySet<string>): { byIndex?: boolean[]; names: Set<string> } | undefined {
  if (sql === undefined || !(starred instanceof MaskingCatalog) || sql.length > MAX_SQL || !sqlParserLoaded()) return undefined;
  const p = prepare(starred);
  const parsed = parseSql(sql);
  const stmt = parsed.ok ? parsed.statements[part]?.stmt : undefined;
  return (stmt && starredOutputs(stmt, p.names)) ?? undefined;
}
