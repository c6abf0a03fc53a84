// How relation and function names are reported to the policy engine.
//
// Tables are always `schema.table`. The parser has already folded unquoted identifiers to
// lower case and kept quoted ones as written (`"Cards"` → `Cards`). An identifier that
// contains `.` or `"` is double-quoted (inner quotes doubled) so that `.` stays an
// unambiguous separator. The catalog of a three-part name (`db.s.t`) is dropped: PostgreSQL
// only accepts the current database there.
//
// Unqualified names cannot be resolved without the session's search_path, which the proxy
// does not know. They are reported as:
//   - `pg_temp.x` when the statement itself creates a temporary relation;
//   - `pg_catalog.x` when x starts with `pg_` (pg_catalog is searched first unless the
//     search_path names it later, and every system catalog is named pg_*);
//   - `<defaultSchema>.x` otherwise (`public`, as with the default search_path and no schema
//     named after the user).
// A session that changes search_path (SET, set_config, startup options) can make an
// unqualified name resolve elsewhere: policy should treat `set` and `set_config` with care.

export interface NameOptions {
  /** Schema assumed for unqualified names; default `public`. */
  defaultSchema: string;
}

export function quoteIdent(id: string): string {
  return id.includes('.') || id.includes('"') ? `"${id.replace(/"/g, '""')}"` : id;
}

export interface RangeVarLike {
  schemaname?: string;
  relname?: string;
  relpersistence?: string;
}

export function tableName(rv: RangeVarLike, opts: NameOptions): string {
  const rel = rv.relname ?? '';
  let schema = rv.schemaname;
  if (schema === undefined || schema === '') {
    if (rv.relpersistence === 't') schema = 'pg_temp';
    else if (rel.startsWith('pg_')) schema = 'pg_catalog';
    else schema = opts.defaultSchema;
  }
  return `${quoteIdent(schema)}.${quoteIdent(rel)}`;
}

/** `['s', 't']` or `['t']` as a DROP/GRANT object list gives it. */
export function qualifiedFromParts(parts: string[], opts: NameOptions): string | undefined {
  if (parts.length === 0) return undefined;
  const rel = parts[parts.length - 1];
  const schema = parts.length >= 2 ? parts[parts.length - 2] : undefined;
  return tableName({ schemaname: schema, relname: rel, relpersistence: 'p' }, opts);
}

/**
 * Function names as written: `pg_read_file`, `pg_catalog.pg_read_file`, `public.dblink`;
 * a part containing `.` or `"` is quoted as tables are, so `"a.b".f` cannot pass for `b.f`.
 */
export function functionName(parts: string[]): string {
  return parts.length === 1 && !NEEDS_QUOTE.test(parts[0]) ? parts[0] : parts.map(quoteIdent).join('.');
}

const NEEDS_QUOTE = /[."]/;

/** Operators as the classifier reports them when a rule must name them: `operator(===)`, `myschema.operator(===)`. */
export function operatorName(parts: string[]): string {
  const name = `operator(${parts[parts.length - 1]})`;
  return parts.length >= 2 ? `${quoteIdent(parts[parts.length - 2])}.${name}` : name;
}

/**
 * The function (or operator) an unqualified name resolves to under the default search_path,
 * schema-qualified, for the rules that must name it: pg_catalog when PostgreSQL has a
 * built-in of that name, the default schema otherwise; a catalog prefix is dropped.
 */
export function resolvedName(parts: string[], builtin: boolean, opts: NameOptions, operator = false): string {
  const last = parts[parts.length - 1];
  const name = operator ? `operator(${last})` : quoteIdent(last);
  const schema = parts.length >= 2 ? parts[parts.length - 2] : builtin ? 'pg_catalog' : opts.defaultSchema;
  return `${quoteIdent(schema)}.${name}`;
}
