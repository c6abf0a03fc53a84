// Masking of what the server returns: DataRow values (text and binary formats),
// COPY data, error and notice fields, NOTIFY payloads. A byte scan decides first
// whether a message can hold a PAN at all (a run of at least 12 digits, separators
// allowed); messages without one are forwarded untouched, so rows without card
// data cost one pass over their bytes and no allocation.

import { B, ProtocolError, readCString } from './wire.js';
import { BUILTIN_TYPES, V, typesOf } from './value-types.js';
import type { TypeCatalog, TypeNode } from './value-types.js';
import { UnmaskableError, maskBinaryValue, unmaskableMessage } from './binary-values.js';
import { maskArrayLiteral, maskJsonText, maskTextValue } from './text-values.js';
import { maskFloatText, maskNumberTextInPlace } from './number-mask.js';
import { decodeNumeric as decodeNumericDigits, encodeNumeric as encodeNumericDigits } from './numeric.js';

export { UnmaskableError } from './binary-values.js';

/** What the proxy needs from the masker (core/mask). */
export interface TextMasker {
  /** The masked text, or the same string when nothing was found. `digitFill` replaces masked digits ('0' for number columns). */
  maskText(text: string, digitFill?: string): string;
  /** Masks a JSON document's text: PANs in strings and numbers, card-data fields. */
  maskJson(text: string): string;
  /** Masks bytes [start, end) in place (same length); returns the number of PANs masked. */
  maskInPlace(buf: Buffer, start: number, end: number, digitFill?: string): number;
}

/** Shortest digit run the masker could call a PAN; a superset filter, never a decision. */
const MIN_DIGITS = 12;

/** True when bytes [start, end) contain a run of MIN_DIGITS digits, allowing single separators between them. */
export function mayHoldPan(buf: Buffer, start: number, end: number): boolean {
  let digits = 0;
  let seps = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c >= 0x30 && c <= 0x39) {
      if (++digits >= MIN_DIGITS) return true;
      seps = 0;
    } else if ((c === 0x20 || c === 0x2d || c === 0x2e || c === 0x2f || c === 0x5f) && ++seps < 3) {
      // space - . / _ : a PAN may be written in groups
    } else {
      digits = 0;
      seps = 0;
    }
  }
  return false;
}

export const enum Col {
  /** Nothing to do (values that cannot hold 12 digits). */
  Skip,
  /** Scanned for PANs and masked in place (text types in either format, bytea in binary). */
  Text,
  /** int8/numeric/money text: digits masked as a number ('0' fill), in place. */
  NumberText,
  /** float8 text: masked on its value (exponent notation), rewritten. */
  FloatText,
  JsonText,
  /** bytea in hex text format (`\x3431…`): decoded, masked, re-encoded in place. */
  ByteaHex,
  /** Arrays, records, uuid in text format: walked by type (plan.nodes). */
  TextValue,
  /** Any binary value walked by type (plan.nodes). */
  Binary,
  /** `spec.masking.columns` in text format: starred by type (plan.nodes). */
  StarText,
  /** `spec.masking.columns` in binary format: starred by type (plan.nodes). */
  StarBinary,
}

export interface ColumnInfo {
  /** The output name (as RowDescription gives it). */
  name?: string;
  tableOid: number;
  column: number;
  typeOid: number;
  format: number;
}

export interface RowPlan {
  cols: Col[];
  /** Some column must be looked at even when the byte scan finds no digit run. */
  always: boolean;
  /** Per column, its type (for TextValue, Binary, StarText, StarBinary). */
  nodes?: (TypeNode | undefined)[];
  types?: TypeCatalog;
  /**
   * Set when a column is asked for in binary format and its type cannot be decoded for
   * masking: the message for the client (it names the type and says "use text format").
   * Such a result is never forwarded (maskDataRow throws).
   */
  unmaskable?: string;
}

/** Parses RowDescription into column infos (formats as the server reported them). */
export function parseRowDescription(buf: Buffer, start: number, end: number): ColumnInfo[] {
  let p = start + 5;
  const n = buf.readInt16BE(p);
  p += 2;
  const cols: ColumnInfo[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const [name, next] = readCString(buf, p, end);
    p = next;
    if (p + 18 > end) throw new ProtocolError('truncated RowDescription');
    cols[i] = { name, tableOid: buf.readUInt32BE(p), column: buf.readInt16BE(p + 4), typeOid: buf.readUInt32BE(p + 6), format: buf.readInt16BE(p + 16) };
    p += 18;
  }
  return cols;
}

/**
 * The per-column work for a result. `formats` (from the client's Bind) override the
 * RowDescription's; `starred` holds `tableOid:column` keys of `spec.masking.columns`
 * (a MaskingCatalog also carries the connection's user types); `derived` marks result
 * columns computed from a starred column (an expression the server gives no table for).
 */
export function planRow(cols: ColumnInfo[], formats: number[] | undefined, starred: ReadonlySet<string>, derived?: readonly boolean[]): RowPlan {
  let always = false;
  let unmaskable: string | undefined;
  const types = typesOf(starred);
  const nodes: (TypeNode | undefined)[] = new Array(cols.length);
  const plan = cols.map((c, i): Col => {
    const fmt = formats === undefined ? c.format : formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i] ?? 0;
    const n = types.node(c.typeOid);
    nodes[i] = n;
    const star = (derived?.[i] ?? false) || (starred.size > 0 && c.tableOid !== 0 && starred.has(`${c.tableOid}:${c.column}`));
    if (fmt === 1) {
      if (!n || n.v === V.Unknown) {
        unmaskable ??= unmaskableMessage(`OID ${c.typeOid}`);
        return Col.Skip;
      }
      always = true;
      if (star) return Col.StarBinary;
      if (n.v === V.Text || n.v === V.Bytea) return Col.Text;
      if (n.v === V.ShortNumber || n.v === V.Harmless) return Col.Skip;
      return Col.Binary;
    }
    if (star) return (always = true), Col.StarText;
    if (!n) return Col.Text;
    if (n.textAlways) always = true;
    switch (n.v) {
      case V.Int8:
      case V.Xid8:
      case V.Numeric:
      case V.Money:
        return Col.NumberText;
      case V.Float8:
        return Col.FloatText;
      case V.ShortNumber:
        return Col.Skip;
      case V.Json:
      case V.Jsonb:
        return Col.JsonText;
      case V.Bytea:
        return Col.ByteaHex;
      case V.Uuid:
      case V.Array:
      case V.Record:
        return Col.TextValue;
      default:
        return Col.Text;
    }
  });
  const p: RowPlan = { cols: plan, always, nodes, types };
  if (unmaskable) p.unmaskable = unmaskable;
  return p;
}

/** A plan for rows whose description is unknown: every value is scanned as text. */
export const UNKNOWN_ROW: RowPlan = { cols: [], always: false };

/**
 * The plan for a portal whose column types are unknown: text results are scanned as
 * text; a result with any binary column cannot be masked and is never forwarded.
 */
export function planUnknown(formats: readonly number[] | undefined): RowPlan {
  if (!formats || !formats.includes(1)) return UNKNOWN_ROW;
  return { cols: [], always: true, unmaskable: 'agentgate: the result types of this statement are unknown, so its binary results cannot be checked for card data; use text format' };
}

/**
 * Masks one DataRow frame [start, end) of `buf`. Same-length changes are made in place
 * (the frame is forwarded as it is, only bytes changed). Returns a replacement frame
 * only when a value changed length or became NULL (JSON, numerics, starred values).
 * Throws UnmaskableError for a binary value that cannot be decoded: never forwarded.
 */
export function maskDataRow(buf: Buffer, start: number, end: number, plan: RowPlan, masker: TextMasker): Buffer | undefined {
  if (plan.unmaskable) throw new UnmaskableError(plan.unmaskable);
  if (!plan.always && !mayHoldPan(buf, start + 7, end)) return undefined;
  const n = buf.readInt16BE(start + 5);
  if (plan.cols.length !== 0 && plan.cols.length !== n) throw new ProtocolError(`DataRow has ${n} values, its description ${plan.cols.length}`);
  let p = start + 7;
  let replaced: (Buffer | null | undefined)[] | undefined;
  for (let i = 0; i < n; i++) {
    if (p + 4 > end) throw new ProtocolError('truncated DataRow');
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) continue;
    if (p + len > end) throw new ProtocolError('truncated DataRow');
    const kind = i < plan.cols.length ? plan.cols[i] : Col.Text;
    let r: Buffer | null | undefined;
    switch (kind) {
      case Col.Skip:
        break;
      case Col.Text:
        if (mayHoldPan(buf, p, p + len)) masker.maskInPlace(buf, p, p + len);
        break;
      case Col.NumberText:
        maskNumberTextInPlace(buf, p, p + len, masker);
        break;
      case Col.ByteaHex:
        maskByteaHex(buf, p, p + len, masker);
        break;
      case Col.Binary:
        r = maskBinaryValue(buf, p, p + len, plan.nodes![i]!, false, plan.types!, masker);
        break;
      case Col.StarBinary:
        r = maskBinaryValue(buf, p, p + len, plan.nodes![i]!, true, plan.types!, masker);
        break;
      default:
        r = maskTextColumn(buf, p, p + len, kind, plan.nodes?.[i], masker);
    }
    if (r !== undefined) (replaced ??= new Array<Buffer | null | undefined>(n))[i] = r;
    p += len;
  }
  if (!replaced) return undefined;
  // Rebuild with the replaced values; the others are copied from the (masked) frame.
  const values: (Buffer | null)[] = [];
  let size = 7;
  p = start + 7;
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    const r = replaced[i];
    const v = len < 0 ? null : r !== undefined ? r : buf.subarray(p, p + len);
    if (len > 0) p += len;
    values.push(v);
    size += 4 + (v ? v.length : 0);
  }
  const msg = Buffer.allocUnsafe(size);
  msg[0] = B.DataRow;
  msg.writeInt32BE(size - 1, 1);
  msg.writeInt16BE(n, 5);
  let w = 7;
  for (const v of values) {
    if (v === null) {
      msg.writeInt32BE(-1, w);
      w += 4;
    } else {
      msg.writeInt32BE(v.length, w);
      v.copy(msg, w + 4);
      w += 4 + v.length;
    }
  }
  return msg;
}

/** Text-format values that may change length: rewritten as a new buffer (null: send NULL). */
function maskTextColumn(buf: Buffer, start: number, end: number, kind: Col, n: TypeNode | undefined, masker: TextMasker): Buffer | null | undefined {
  if (kind === Col.FloatText || (kind === Col.TextValue && !n?.textAlways)) {
    if (!mayHoldPan(buf, start, end)) return undefined;
  }
  const text = buf.toString('utf8', start, end);
  let masked: string | null;
  switch (kind) {
    case Col.FloatText:
      masked = maskFloatText(text, masker);
      break;
    case Col.JsonText:
      masked = maskJsonText(text, masker);
      break;
    case Col.StarText:
      masked = maskTextValue(text, n, true, masker);
      break;
    default:
      masked = maskTextValue(text, n, false, masker);
  }
  if (masked === null) return null;
  return masked === text ? undefined : Buffer.from(masked, 'utf8');
}

/** `\x` + hex: the bytes may hold a PAN as ASCII; masked bytes are written back as hex (same length). */
function maskByteaHex(buf: Buffer, start: number, end: number, masker: TextMasker): void {
  if (end - start < 2 || buf[start] !== 0x5c || buf[start + 1] !== 0x78) {
    // escape format: printable ASCII digits appear as themselves
    if (mayHoldPan(buf, start, end)) masker.maskInPlace(buf, start, end);
    return;
  }
  const raw = Buffer.from(buf.toString('latin1', start + 2, end), 'hex');
  if (!mayHoldPan(raw, 0, raw.length)) return;
  if (masker.maskInPlace(raw, 0, raw.length) > 0) buf.write(raw.toString('hex'), start + 2, 'latin1');
}

/** A json[]/jsonb[] array literal with every element masked as JSON (card-data keys starred). */
export function maskJsonArrayLiteral(text: string, masker: TextMasker): string {
  return maskArrayLiteral(text, BUILTIN_TYPES.node(3802), false, masker);
}

/** Binary numeric as decimal text, or undefined for NaN and ±Infinity. */
export function decodeNumeric(buf: Buffer, start: number, end: number): string | undefined {
  let d;
  try {
    d = decodeNumericDigits(buf, start, end);
  } catch {
    return undefined;
  }
  if (!d) return undefined;
  return (d.negative ? '-' : '') + (d.int || '0') + (d.dscale > 0 ? '.' + d.frac : '');
}

export function encodeNumeric(text: string, dscale: number): Buffer {
  const neg = text.startsWith('-');
  const [ip, fp = ''] = (neg ? text.slice(1) : text).split('.');
  return encodeNumericDigits(neg, ip, fp, dscale);
}

/** ErrorResponse / NoticeResponse: every field value masked. */
export function maskFieldsMessage(buf: Buffer, start: number, end: number, masker: TextMasker): Buffer | undefined {
  if (!mayHoldPan(buf, start + 5, end)) return undefined;
  const parts: Buffer[] = [buf.subarray(start, start + 5)];
  let p = start + 5;
  let changed = false;
  while (p < end && buf[p] !== 0) {
    const code = buf[p];
    const [value, next] = readCString(buf, p + 1, end);
    const masked = masker.maskText(value);
    if (masked !== value) changed = true;
    parts.push(Buffer.from([code]), Buffer.from(masked + '\0', 'utf8'));
    p = next;
  }
  if (!changed) return undefined;
  parts.push(Buffer.from([0]));
  return reframe(Buffer.concat(parts));
}

/** NotificationResponse: channel and payload masked. */
export function maskNotification(buf: Buffer, start: number, end: number, masker: TextMasker): Buffer | undefined {
  if (!mayHoldPan(buf, start + 9, end)) return undefined;
  const [channel, p] = readCString(buf, start + 9, end);
  const [payload] = readCString(buf, p, end);
  const mc = masker.maskText(channel);
  const mp = masker.maskText(payload);
  if (mc === channel && mp === payload) return undefined;
  return reframe(Buffer.concat([buf.subarray(start, start + 9), Buffer.from(mc + '\0' + mp + '\0', 'utf8')]));
}

/**
 * CopyData from the server: the row (text, CSV or binary format) masked in place, same
 * length. COPY does not say a column's type, so in text format (tab-separated, backslash
 * escapes) a field that starts with `{` or `[` and parses as JSON is masked as JSON too
 * (card-data keys starred); the row is then rebuilt. CSV and binary rows get PAN masking only.
 */
export function maskCopyData(buf: Buffer, start: number, end: number, masker: TextMasker, textFormat = true): Buffer | undefined {
  if (mayHoldPan(buf, start + 5, end)) masker.maskInPlace(buf, start + 5, end);
  return textFormat && hasJsonField(buf, start + 5, end) ? maskCopyJsonFields(buf, start, end, masker) : undefined;
}

function hasJsonField(buf: Buffer, start: number, end: number): boolean {
  let p = start;
  while (p < end) {
    const c = buf[p];
    if (c === 0x7b || c === 0x5b) return true;
    const tab = buf.indexOf(0x09, p);
    if (tab < 0 || tab >= end) return false;
    p = tab + 1;
  }
  return false;
}

const COPY_UNESCAPE: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

function maskCopyJsonFields(buf: Buffer, start: number, end: number, masker: TextMasker): Buffer | undefined {
  let row = buf.toString('utf8', start + 5, end);
  const nl = row.endsWith('\n') ? '\n' : '';
  if (nl) row = row.slice(0, -1);
  const fields = row.split('\t');
  let changed = false;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f[0] !== '{' && f[0] !== '[') continue;
    const text = f.replace(/\\(.)/g, (_, c: string) => COPY_UNESCAPE[c] ?? c);
    let masked: string;
    try {
      masked = masker.maskJson(text);
    } catch {
      // Not JSON: perhaps a json[] array literal; anything else is left to the PAN masking above.
      masked = f[0] === '{' ? maskJsonArrayLiteral(text, masker) : text;
    }
    if (masked === text) continue;
    changed = true;
    fields[i] = masked.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
  }
  if (!changed) return undefined;
  const body = Buffer.from(fields.join('\t') + nl, 'utf8');
  const msg = Buffer.allocUnsafe(5 + body.length);
  msg[0] = buf[start];
  msg.writeInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  return msg;
}

function reframe(msg: Buffer): Buffer {
  msg.writeInt32BE(msg.length - 1, 1);
  return msg;
}
