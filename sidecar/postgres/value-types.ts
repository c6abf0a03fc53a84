// What the result masker knows about a PostgreSQL type: how a value of it can carry
// a PAN and how to mask or star it, in text and in binary format. Built-in types are
// listed here by OID (pg_type.dat); user types (composites, domains, enums and arrays
// of them) come from the server's catalogue, read once at connection start. A type
// found in neither is unknown: its text form is still scanned for PANs, its binary
// form is never forwarded (the masker cannot see inside it).

export const enum V {
  /** Text types: the value is the characters (binary format = the same bytes). */
  Text,
  /** Integers and floats too short for a PAN (int2, int4, oid, float4, …): fixed width, starred as 0. */
  ShortNumber,
  Int8,
  /** xid8: an unsigned 64-bit integer. */
  Xid8,
  Float8,
  Numeric,
  /** money: an int8 count of the currency's smallest unit. */
  Money,
  Bytea,
  Json,
  Jsonb,
  Uuid,
  /** Types whose values cannot spell a PAN (bool, dates, times, network addresses): starred as NULL. */
  Harmless,
  Array,
  Record,
  /** Not known to the proxy: text is scanned for PANs; binary is refused. */
  Unknown,
}

export interface TypeNode {
  v: V;
  oid: number;
  /** Array: the element type when known from the catalogue (binary arrays carry it themselves). */
  elem?: TypeNode;
  /** Record of a known composite type: field types in attribute order (dropped columns excluded). */
  fields?: TypeNode[];
  /** Record: fields that are `spec.masking.columns` of the table whose row type this is. */
  starred?: boolean[];
  /** Text format: the value must be parsed even when its bytes hold no digit run (JSON, starred fields, grouped digits). */
  textAlways: boolean;
}

const node = (v: V, oid: number, textAlways = false): TypeNode => ({ v, oid, textAlways });

/** Built-in scalar types by OID. */
const SCALARS = new Map<number, TypeNode>();
/** Built-in array types: array OID → element OID. */
const BUILTIN_ARRAYS = new Map<number, number>();

function scalar(v: V, oid: number, arrayOid: number, textAlways = false): void {
  SCALARS.set(oid, node(v, oid, textAlways));
  if (arrayOid) BUILTIN_ARRAYS.set(arrayOid, oid);
}

// Text: text, varchar, bpchar, name, "char", unknown, xml, jsonpath (binary: version byte + text),
// citext-like user types come through the catalogue as unknown.
scalar(V.Text, 25, 1009);
scalar(V.Text, 1043, 1015);
scalar(V.Text, 1042, 1014);
scalar(V.Text, 19, 1003);
scalar(V.Text, 18, 1002);
scalar(V.Text, 705, 0);
scalar(V.Text, 142, 143);
// Integers of at most 10 digits, and float4 (24-bit mantissa: about 7 significant digits).
for (const [oid, arr] of [
  [21, 1005], [23, 1007], [26, 1028], [700, 1021], [28, 1011], [29, 1012],
  [24, 1008], [2202, 2207], [2203, 2208], [2204, 2209], [2205, 2210], [2206, 2211], [4096, 4097], [4089, 4090], [3734, 3735], [3769, 3770],
] as const) scalar(V.ShortNumber, oid, arr);
scalar(V.Int8, 20, 1016);
scalar(V.Xid8, 5069, 271);
scalar(V.Float8, 701, 1022);
// Text numeric has no exponent, but a PAN may sit in the integer part followed by decimals.
scalar(V.Numeric, 1700, 1231);
// money text is grouped (`$4,111,111,111,111,111.00`): no digit run for the quick scan to see.
scalar(V.Money, 790, 791, true);
// bytea text is hex (`\x3431…`): the digits are hidden.
scalar(V.Bytea, 17, 1001, true);
// JSON is parsed even without digits: a card-data key (cvv) is starred whatever its value.
scalar(V.Json, 114, 199, true);
scalar(V.Jsonb, 3802, 3807, true);
scalar(V.Uuid, 2950, 2951);
// The geometric types (point, lseg, box, line, circle, path, polygon) are not here: in binary
// they are float8s, and a PAN cast to a point would reach the driver as that number. Unknown
// to the proxy, their binary form is refused and their text form is scanned.
for (const [oid, arr] of [
  [16, 1000], [1082, 1182], [1083, 1183], [1114, 1115], [1184, 1185], [1186, 1187], [1266, 1270],
  [869, 1041], [650, 651], [829, 1040], [774, 775], [1560, 1561], [1562, 1563],
] as const) scalar(V.Harmless, oid, arr);

/** record (anonymous ROW(...)) and record[]: fields carry their own OIDs in binary. */
const RECORD = 2249;
const RECORD_ARRAY = 2287;

/** One user type as the catalogue describes it. */
export interface CatalogType {
  oid: number;
  /** pg_type.typtype: c composite, d domain, e enum; 'a' for an array type. */
  kind: 'c' | 'd' | 'e' | 'a';
  /** Domain: base type. Array: element type. */
  base?: number;
  /** Composite: attribute type OIDs in attribute order. */
  fields?: number[];
  /** Composite: which fields are `spec.masking.columns`. */
  starred?: boolean[];
}

/**
 * The types a connection's results can have: built-ins plus the user types read at
 * connection start. Nodes are built once per OID and shared (never modified).
 */
export class TypeCatalog {
  private readonly user = new Map<number, CatalogType>();
  private readonly nodes = new Map<number, TypeNode | null>();
  private readonly relations = new Map<string, RelationInfo[]>();

  constructor(types: Iterable<CatalogType> = [], relations: Iterable<RelationInfo> = []) {
    for (const t of types) this.user.set(t.oid, t);
    for (const r of relations) {
      const list = this.relations.get(r.name);
      if (list) list.push(r);
      else this.relations.set(r.name, [r]);
    }
  }

  /**
   * A table by name as a statement names it. Unqualified: the one table of that name,
   * else the one in `public` (the default search_path); undefined when it stays ambiguous.
   */
  relation(schema: string | undefined, name: string): RelationInfo | undefined {
    const list = this.relations.get(name);
    if (!list) return undefined;
    if (schema !== undefined) return list.find((r) => r.schema === schema);
    return list.length === 1 ? list[0] : list.find((r) => r.schema === 'public');
  }

  /** The node for `oid`, or undefined when neither PostgreSQL's built-ins nor the catalogue know it. */
  node(oid: number): TypeNode | undefined {
    const hit = this.nodes.get(oid);
    if (hit !== undefined) return hit ?? undefined;
    // A placeholder breaks cycles (a composite holding an array of itself cannot exist, but a broken catalogue could say so).
    this.nodes.set(oid, null);
    const n = this.build(oid, 0);
    this.nodes.set(oid, n ?? null);
    return n;
  }

  private build(oid: number, depth: number): TypeNode | undefined {
    if (depth > 32) return undefined;
    const s = SCALARS.get(oid);
    if (s) return s;
    const elemOid = BUILTIN_ARRAYS.get(oid);
    if (elemOid !== undefined) return arrayNode(oid, SCALARS.get(elemOid)!);
    if (oid === RECORD) return { v: V.Record, oid, textAlways: false };
    if (oid === RECORD_ARRAY) return arrayNode(oid, { v: V.Record, oid: RECORD, textAlways: false });
    const t = this.user.get(oid);
    if (!t) return undefined;
    switch (t.kind) {
      case 'd': {
        const b = t.base === undefined ? undefined : this.node(t.base);
        return b && { ...b, oid };
      }
      case 'e':
        // Enum labels are text (binary format too).
        return node(V.Text, oid);
      case 'a': {
        const e = t.base === undefined ? undefined : this.node(t.base);
        return e && arrayNode(oid, e);
      }
      case 'c': {
        const fields: TypeNode[] = [];
        for (const f of t.fields ?? []) {
          const n = this.node(f);
          // An unknown field type: its text is scanned, its binary form refused when met.
          fields.push(n ?? { v: V.Unknown, oid: f, textAlways: false });
        }
        const starred = t.starred?.some(Boolean) ? t.starred : undefined;
        return { v: V.Record, oid, fields, starred, textAlways: starred !== undefined || fields.some((f) => f.textAlways) };
      }
    }
  }
}

function arrayNode(oid: number, elem: TypeNode): TypeNode {
  return { v: V.Array, oid, elem, textAlways: elem.textAlways };
}

/** A catalogue with the built-in types only. */
export const BUILTIN_TYPES = new TypeCatalog();

/**
 * What the listener resolves once at connection start and every session shares: the
 * `tableOid:attnum` keys of `spec.masking.columns` (it is the set the session already
 * passes to planRow) plus the user types, so planRow needs no new argument.
 */
export class MaskingCatalog extends Set<string> {
  constructor(
    keys: Iterable<string>,
    readonly types: TypeCatalog,
    /** `spec.masking.columns` by name (schema, table, column), for expressions the server gives no origin for. */
    readonly columns: readonly { schema?: string; table: string; column: string }[] = [],
    /** `spec.masking.fields`: card-data JSON keys beside the defaults. */
    readonly cardFields: readonly string[] = [],
  ) {
    super(keys);
  }
}

/** The type catalogue behind a `starred` set (built-ins only for a plain set). */
export function typesOf(starred: ReadonlySet<string>): TypeCatalog {
  return starred instanceof MaskingCatalog ? starred.types : BUILTIN_TYPES;
}

/** The catalogue query: user composites (with attribute types, numbers and names, and the relation they are the row type of), domains, enums and arrays of them. */
export const USER_TYPES_SQL =
  "select t.oid::int8, case when t.typcategory = 'A' and t.typelem <> 0 then 'a' else t.typtype::text end, " +
  "case when t.typtype = 'd' then t.typbasetype::int8 else t.typelem::int8 end, t.typrelid::int8, " +
  '(select json_agg(json_build_array(a.atttypid::int8, a.attnum, a.attname) order by a.attnum) from pg_catalog.pg_attribute a ' +
  'where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)::text, n.nspname::text, c.relname::text ' +
  'from pg_catalog.pg_type t join pg_catalog.pg_namespace n on n.oid = t.typnamespace ' +
  'left join pg_catalog.pg_class c on c.oid = t.typrelid ' +
  "where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' " +
  "and (t.typtype in ('c', 'd', 'e') or (t.typcategory = 'A' and t.typelem <> 0))";

/** Columns in each row of USER_TYPES_SQL. */
export const USER_TYPES_WIDTH = 7;

/** A table (or view) as COPY and `*` see it: its columns in order. */
export interface RelationInfo {
  schema: string;
  name: string;
  rowType: number;
  columns: { name: string; type: number; starred: boolean }[];
}

/** Rows of USER_TYPES_SQL (text format) into catalogue entries; `starred` marks the fields of tables' row types. */
export function catalogFromRows(rows: readonly (readonly (string | null)[])[], starred: ReadonlySet<string>): { types: CatalogType[]; relations: RelationInfo[] } {
  const types: CatalogType[] = [];
  const relations: RelationInfo[] = [];
  for (const [oid, kind, base, relid, attrs, schema, rel] of rows) {
    if (oid === null || kind === null) continue;
    const t: CatalogType = { oid: Number(oid), kind: kind as CatalogType['kind'] };
    if (kind === 'd' || kind === 'a') t.base = Number(base);
    else if (kind === 'c') {
      const list = (attrs ? JSON.parse(attrs) : []) as [number, number, string][];
      t.fields = list.map((a) => a[0]);
      t.starred = list.map((a) => starred.has(`${relid}:${a[1]}`));
      if (rel !== null && rel !== undefined && schema !== null && schema !== undefined) {
        relations.push({ schema, name: rel, rowType: t.oid, columns: list.map((a, i) => ({ name: a[2], type: a[0], starred: t.starred![i] })) });
      }
    } else if (kind !== 'e') continue;
    types.push(t);
  }
  return { types, relations };
}

/** `schema.table.column` (or `table.column`) entries of `spec.masking.columns` split into names. */
export function columnNames(columns: readonly string[]): { schema?: string; table: string; column: string }[] {
  return columns.flatMap((c) => {
    const p = c.split('.');
    if (p.length === 3) return [{ schema: p[0], table: p[1], column: p[2] }];
    if (p.length === 2) return [{ table: p[0], column: p[1] }];
    return [];
  });
}
