// COPY … TO STDOUT masked like a SELECT: each row (the server sends one per CopyData)
// is split into fields the way COPY writes them (text: delimiter and backslash escapes;
// CSV: quotes; binary: field count, then length and bytes per field), and each field
// goes through the same value masker as a DataRow value, by its column's type and
// starred when its column is. The columns come from the COPY statement: a table's
// attributes in order (or its column list) from the catalogue, or for COPY (query) the
// parse tree's derived outputs, with types guessed from the text (JSON, bytea hex,
// numbers). Binary COPY of columns whose types are unknown is refused: never forwarded.

import { parseSql, sqlParserLoaded } from '../../core/sql/parser.js';
import type { AstNode } from '../../core/sql/parser.js';
import { B, ProtocolError } from './wire.js';
import { mayHoldPan } from './result-mask.js';
import type { TextMasker } from './result-mask.js';
import { V, typesOf } from './value-types.js';
import type { TypeCatalog, TypeNode } from './value-types.js';
import { UnmaskableError, maskBinaryValue } from './binary-values.js';
import { maskTextValue } from './text-values.js';
import { maskNumberTextInPlace } from './number-mask.js';
import { derivedCopyColumns } from './provenance.js';

type Obj = Record<string, unknown>;

export interface CopyPlan {
  format: 'text' | 'csv' | 'binary';
  delimiter: string;
  nullString: string;
  quote: string;
  escape: string;
  header: boolean;
  /** Per column, its type; undefined when the columns are not known (COPY (query)). */
  nodes?: (TypeNode | undefined)[];
  stars: boolean[];
  types: TypeCatalog;
}

const str = (n: unknown): string | undefined => {
  const s = ((n as Obj | undefined)?.String as Obj | undefined)?.sval;
  return typeof s === 'string' ? s : undefined;
};

/** The COPY's shape from statement `part` of `sql` (undefined text: what CopyOutResponse says, types unknown). */
export function planCopy(sql: string | undefined, part: number, starred: ReadonlySet<string>, binary: boolean): CopyPlan {
  const types = typesOf(starred);
  const plan: CopyPlan = { format: binary ? 'binary' : 'text', delimiter: '\t', nullString: '\\N', quote: '"', escape: '"', header: false, stars: [], types };
  if (sql === undefined || !sqlParserLoaded()) return plan;
  const parsed = parseSql(sql);
  const copy = parsed.ok ? ((parsed.statements[part]?.stmt as AstNode | undefined)?.CopyStmt as Obj | undefined) : undefined;
  if (!copy) return plan;
  let csv = false;
  const opts: Record<string, string | undefined> = {};
  for (const o of (copy.options ?? []) as AstNode[]) {
    const d = o.DefElem as Obj | undefined;
    if (!d) continue;
    const v = str(d.arg) ?? ((d.arg as Obj | undefined)?.Boolean !== undefined ? String(((d.arg as Obj).Boolean as Obj).boolval ?? false) : d.arg === undefined ? 'true' : undefined);
    opts[String(d.defname)] = v;
  }
  if (opts.format === 'csv') csv = true;
  if (!binary && csv) {
    plan.format = 'csv';
    plan.delimiter = ',';
    plan.nullString = '';
  }
  if (opts.delimiter !== undefined) plan.delimiter = opts.delimiter;
  if (opts.null !== undefined) plan.nullString = opts.null;
  if (opts.quote !== undefined) plan.quote = opts.quote;
  plan.escape = opts.escape ?? plan.quote;
  plan.header = opts.header !== undefined && opts.header !== 'false' && opts.header !== 'off' && opts.header !== '0';
  const rel = copy.relation as Obj | undefined;
  if (rel) {
    const r = types.relation(rel.schemaname !== undefined ? String(rel.schemaname) : undefined, String(rel.relname));
    if (!r) return plan;
    const list = ((copy.attlist ?? []) as AstNode[]).map(str);
    const cols = list.length ? list.map((n) => r.columns.find((c) => c.name === n)) : r.columns;
    if (cols.some((c) => c === undefined)) return plan;
    plan.nodes = cols.map((c) => types.node(c!.type) ?? { v: V.Unknown, oid: c!.type, textAlways: false });
    plan.stars = cols.map((c) => c!.starred);
    return plan;
  }
  const d = derivedCopyColumns(sql, part, starred);
  if (d?.byIndex) plan.stars = d.byIndex;
  return plan;
}

/** One COPY OUT in progress: masks its CopyData messages in order. */
export class CopyOutMasker {
  private headerSeen = false;
  private readonly always: boolean;
  /**
   * Text format, every column text or a number, none starred: fields are masked in place on
   * the bytes (COPY escapes never touch digits), the row is forwarded as it is.
   */
  private readonly inPlace?: V[];

  constructor(
    readonly plan: CopyPlan,
    private readonly masker: TextMasker,
  ) {
    this.always = plan.stars.some(Boolean) || (plan.nodes?.some((n) => n?.textAlways) ?? false);
    // Unknown columns (COPY (query)) are guessed field by field; a structured one (JSON, bytea hex, literals) takes the slow path.
    const kinds = plan.nodes ? plan.nodes.map((n) => (n ? n.v : V.Unknown)) : [];
    if (plan.format === 'text' && Buffer.byteLength(plan.delimiter) === 1 && !plan.stars.some(Boolean) && kinds.every((k) => IN_PLACE.has(k))) this.inPlace = kinds;
  }

  /** Masks the row's fields in place; false when a field needs the slow path (nothing changed then). */
  private maskInPlace(buf: Buffer, start: number, end: number): boolean {
    const kinds = this.inPlace!;
    const d = this.plan.delimiter.charCodeAt(0);
    const stop = buf[end - 1] === 0x0a ? end - 1 : end;
    const bounds: number[] = [];
    for (let s = start; ; ) {
      let e = buf.indexOf(d, s);
      if (e < 0 || e > stop) e = stop;
      const k = kinds.length ? kinds[bounds.length >> 1] : V.Unknown;
      const nullField = e - s === 2 && buf[s] === 0x5c && buf[s + 1] === 0x4e; // \N
      if (k === V.Unknown && e > s && !nullField && (buf[s] === 0x7b || buf[s] === 0x5b || buf[s] === 0x28 || buf[s] === 0x5c)) return false;
      bounds.push(s, e);
      if (e >= stop) break;
      s = e + 1;
    }
    for (let i = 0; i < bounds.length; i += 2) {
      const s = bounds[i];
      const e = bounds[i + 1];
      const k = kinds.length ? kinds[i >> 1] : V.Unknown;
      if (k === V.Text || k === V.Harmless || (k === V.Unknown && !numberLike(buf, s, e))) {
        if (mayHoldPan(buf, s, e)) this.masker.maskInPlace(buf, s, e);
      } else if (k !== V.ShortNumber) maskNumberTextInPlace(buf, s, e, this.masker);
    }
    return true;
  }

  /** A replacement CopyData frame, or undefined when the frame was forwarded as it is (maybe masked in place). */
  mask(buf: Buffer, start: number, end: number): Buffer | undefined {
    const body = start + 5;
    if (this.plan.format === 'binary') return this.binary(buf, body, end);
    if (this.plan.header && !this.headerSeen) {
      this.headerSeen = true;
      if (mayHoldPan(buf, body, end)) this.masker.maskInPlace(buf, body, end);
      return undefined;
    }
    if (this.inPlace && (!this.plan.nodes || !this.always)) {
      if (!(mayHoldPan(buf, body, end) || mayHoldGroupedNumber(buf, body, end))) {
        if (this.plan.nodes || !mayHoldStructure(buf, body, end)) return undefined;
      }
      if (this.maskInPlace(buf, body, end)) return undefined;
    }
    // Unknown columns: JSON and bytea hex are recognised by their first characters.
    if (!this.always && !mayHoldPan(buf, body, end) && !(this.plan.nodes === undefined && mayHoldStructure(buf, body, end))) return undefined;
    const row = buf.toString('utf8', body, end);
    const masked = this.plan.format === 'csv' ? this.csvRow(row) : this.textRow(row);
    return masked === undefined ? undefined : frame(Buffer.from(masked, 'utf8'));
  }

  private valueOf(i: number, value: string): string | null {
    const n = this.plan.nodes ? this.plan.nodes[i] : undefined;
    return maskTextValue(value, n, this.plan.stars[i] ?? false, this.masker);
  }

  private textRow(row: string): string | undefined {
    const nl = row.endsWith('\n') ? '\n' : '';
    const fields = (nl ? row.slice(0, -1) : row).split(this.plan.delimiter);
    let changed = false;
    for (let i = 0; i < fields.length; i++) {
      const raw = fields[i];
      if (raw === this.plan.nullString) continue;
      const value = unescapeText(raw);
      const m = this.valueOf(i, value);
      if (m === value) continue;
      changed = true;
      fields[i] = m === null ? this.plan.nullString : escapeText(m, this.plan.delimiter);
    }
    return changed ? fields.join(this.plan.delimiter) + nl : undefined;
  }

  private csvRow(row: string): string | undefined {
    const { delimiter: d, quote: q, escape: e } = this.plan;
    const fields: { value: string; quoted: boolean }[] = [];
    let i = 0;
    let nl = '';
    for (;;) {
      let value = '';
      let quoted = false;
      while (i < row.length && row[i] !== d && row[i] !== '\n' && !(row[i] === '\r' && row[i + 1] === '\n')) {
        if (row[i] === q) {
          quoted = true;
          i++;
          while (i < row.length) {
            if (row[i] === e && row[i + 1] === q) {
              value += q;
              i += 2;
              continue;
            }
            if (row[i] === q) break;
            value += row[i++];
          }
          i++;
        } else value += row[i++];
      }
      fields.push({ value, quoted });
      if (i >= row.length) break;
      if (row[i] === d) {
        i++;
        continue;
      }
      nl = row.slice(i);
      break;
    }
    let changed = false;
    const out = fields.map((f, k) => {
      if (!f.quoted && f.value === this.plan.nullString) return f;
      const m = this.valueOf(k, f.value);
      if (m === f.value) return f;
      changed = true;
      return m === null ? { value: this.plan.nullString, quoted: false } : { value: m, quoted: true };
    });
    if (!changed) return undefined;
    return out.map((f) => (f.quoted ? q + f.value.split(q).join(e + q) + q : f.value)).join(d) + nl;
  }

  private binary(buf: Buffer, start: number, end: number): Buffer | undefined {
    let p = start;
    if (!this.headerSeen) {
      // PGCOPY\n\377\r\n\0, flags, header extension length, extension.
      if (end - p < 19 || buf.toString('latin1', p, p + 11) !== 'PGCOPY\n\xff\r\n\0') throw new ProtocolError('binary COPY data without its header');
      p += 19 + buf.readInt32BE(p + 15);
      this.headerSeen = true;
    }
    const nodes = this.plan.nodes;
    let parts: Buffer[] | undefined;
    let copied = start;
    while (p < end) {
      const count = buf.readInt16BE(p);
      p += 2;
      if (count === -1) break;
      if (!nodes) throw new UnmaskableError('agentgate: the column types of this COPY are unknown, so its binary output cannot be checked for card data; use FORMAT text or csv');
      if (count !== nodes.length) throw new ProtocolError(`binary COPY row has ${count} fields, the table ${nodes.length}`);
      for (let i = 0; i < count; i++) {
        const len = buf.readInt32BE(p);
        const at = p;
        p += 4;
        if (len < 0) continue;
        if (p + len > end) throw new ProtocolError('binary COPY row split across messages');
        const n = nodes[i];
        if (!n || n.v === V.Unknown) throw new UnmaskableError(`agentgate: COPY column ${i + 1} has a type (OID ${n?.oid}) that cannot be checked for card data in binary format; use FORMAT text or csv`);
        const r = maskBinaryValue(buf, p, p + len, n, this.plan.stars[i] ?? false, this.plan.types, this.masker);
        if (r !== undefined) {
          parts ??= [];
          const l = Buffer.allocUnsafe(4);
          l.writeInt32BE(r === null ? -1 : r.length);
          parts.push(buf.subarray(copied, at), l);
          if (r) parts.push(r);
          copied = p + len;
        }
        p += len;
      }
    }
    if (!parts) return undefined;
    parts.push(buf.subarray(copied, end));
    return frame(Buffer.concat(parts));
  }
}

/** A CopyOutMasker for a CopyOutResponse frame, for statement `part` of `sql`. */
export function copyOutMasker(buf: Buffer, start: number, sql: string | undefined, part: number, starred: ReadonlySet<string>, masker: TextMasker): CopyOutMasker {
  const binary = buf[start + 5] === 1;
  let plan: CopyPlan;
  try {
    plan = planCopy(sql, part, starred, binary);
  } catch {
    plan = planCopy(undefined, 0, starred, binary);
  }
  return new CopyOutMasker(plan, masker);
}

const IN_PLACE = new Set<V>([V.Text, V.Harmless, V.ShortNumber, V.Int8, V.Xid8, V.Numeric, V.Money, V.Unknown]);

/** Digits, signs, a currency sign, separators: a field a guess reads as a number (masked with zeros). */
function numberLike(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (!((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2c || c === 0x2d || c === 0x2b || c === 0x24)) return false;
  }
  return end > start;
}

/** money text groups digits with commas, which the PAN pre-filter does not follow. */
function mayHoldGroupedNumber(buf: Buffer, start: number, end: number): boolean {
  let digits = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c >= 0x30 && c <= 0x39) {
      if (++digits >= 12) return true;
    } else if (c !== 0x2c) digits = 0;
  }
  return false;
}

function mayHoldStructure(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c === 0x7b || c === 0x5b || c === 0x5c) return true;
  }
  return false;
}

const UNESCAPE: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** COPY text escapes: \b \f \n \r \t \v, \digits (octal), \xhex, \c for any other c. */
function unescapeText(s: string): string {
  if (!s.includes('\\')) return s;
  return s.replace(/\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))/g, (_, oct?: string, hex?: string, c?: string) =>
    oct ? String.fromCharCode(parseInt(oct, 8)) : hex ? String.fromCharCode(parseInt(hex, 16)) : (UNESCAPE[c!] ?? c!),
  );
}

function escapeText(s: string, delimiter: string): string {
  let out = '';
  for (const ch of s) {
    if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === delimiter) out += '\\' + ch;
    else out += ch;
  }
  return out;
}

function frame(body: Buffer): Buffer {
  const msg = Buffer.allocUnsafe(5 + body.length);
  msg[0] = B.CopyData;
  msg.writeInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  return msg;
}
