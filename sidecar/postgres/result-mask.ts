// Masking of what the server returns: DataRow values (text and binary formats),
// COPY data, error and notice fields, NOTIFY payloads. A byte scan decides first
// whether a message can hold a PAN at all (a run of at least 12 digits, separators
// allowed); messages without one are forwarded untouched, so rows without card
// data cost one pass over their bytes and no allocation.

import { B, ProtocolError, readCString } from './wire.js';

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

// Type OIDs (pg_type.dat) the masker treats specially.
const INT8 = 20;
const NUMERIC = 1700;
const JSON_OID = 114;
const JSONB = 3802;
const JSON_ARRAY = 199;
const JSONB_ARRAY = 3807;
const BYTEA = 17;
/** Text output of these is digits only: masked digits become '0' so drivers still parse it. */
const NUMBER_TYPES = new Set([20, 21, 23, 26, 700, 701, 1700, 790, 1016, 1005, 1007, 1231, 1021, 1022]);
/** Binary output of these is their text (jsonb: version byte + text). */
const BINARY_TEXT_TYPES = new Set([25, 1043, 1042, 19, 18, 114, 142, 705, 3802]);

export const enum Col {
  /** Nothing to do (binary fixed-width types that cannot hold 12 digits). */
  Skip,
  Text,
  NumberText,
  JsonText,
  BinaryJsonb,
  /** json[] / jsonb[] in text format: each element is a JSON document inside an array literal. */
  JsonArrayText,
  /** json[] / jsonb[] in binary format (array header, then json text or jsonb version byte + text). */
  BinaryJsonArray,
  BinaryInt8,
  BinaryNumeric,
  Star,
  StarNumber,
  StarBinary,
  /** bytea in hex text format (`\x3431…`): decoded, masked, re-encoded in place. */
  ByteaHex,
}

export interface ColumnInfo {
  tableOid: number;
  column: number;
  typeOid: number;
  format: number;
}

export interface RowPlan {
  cols: Col[];
  /** Some column must be looked at even when the byte scan finds no digit run. */
  always: boolean;
}

/** Parses RowDescription into column infos (formats as the server reported them). */
export function parseRowDescription(buf: Buffer, start: number, end: number): ColumnInfo[] {
  let p = start + 5;
  const n = buf.readInt16BE(p);
  p += 2;
  const cols: ColumnInfo[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const [, next] = readCString(buf, p, end);
    p = next;
    if (p + 18 > end) throw new ProtocolError('truncated RowDescription');
    cols[i] = { tableOid: buf.readUInt32BE(p), column: buf.readInt16BE(p + 4), typeOid: buf.readUInt32BE(p + 6), format: buf.readInt16BE(p + 16) };
    p += 18;
  }
  return cols;
}

/**
 * The per-column work for a result. `formats` (from the client's Bind) override the
 * RowDescription's; `starred` holds `tableOid:column` keys of `spec.masking.columns`.
 */
export function planRow(cols: ColumnInfo[], formats: number[] | undefined, starred: ReadonlySet<string>): RowPlan {
  let always = false;
  const plan = cols.map((c, i) => {
    const fmt = formats === undefined ? c.format : formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i] ?? 0;
    const number = NUMBER_TYPES.has(c.typeOid);
    if (starred.size && c.tableOid && starred.has(`${c.tableOid}:${c.column}`)) {
      always = true;
      return fmt === 1 ? Col.StarBinary : number ? Col.StarNumber : Col.Star;
    }
    if (fmt === 1) {
      if (c.typeOid === INT8) return (always = true), Col.BinaryInt8;
      if (c.typeOid === NUMERIC) return (always = true), Col.BinaryNumeric;
      // JSON is always parsed: a card-data key (cvv) needs no digit run to be masked.
      if (c.typeOid === JSONB) return (always = true), Col.BinaryJsonb;
      if (c.typeOid === JSON_OID) return (always = true), Col.JsonText;
      if (c.typeOid === JSON_ARRAY || c.typeOid === JSONB_ARRAY) return (always = true), Col.BinaryJsonArray;
      // Unknown binary types are scanned as bytes: an ASCII PAN inside is still found.
      return BINARY_TEXT_TYPES.has(c.typeOid) ? Col.Text : Col.Text;
    }
    if (c.typeOid === JSON_OID || c.typeOid === JSONB) return (always = true), Col.JsonText;
    if (c.typeOid === JSON_ARRAY || c.typeOid === JSONB_ARRAY) return (always = true), Col.JsonArrayText;
    if (c.typeOid === BYTEA) return (always = true), Col.ByteaHex;
    return number ? Col.NumberText : Col.Text;
  });
  return { cols: plan, always };
}

/** A plan for rows whose description is unknown: every value is scanned as text. */
export const UNKNOWN_ROW: RowPlan = { cols: [], always: false };

/**
 * Masks one DataRow frame [start, end) of `buf`. Text values are masked in place
 * (same length: the frame is forwarded as it is, only bytes changed). Returns a
 * replacement frame only when a value changed length (JSON, binary numbers).
 */
export function maskDataRow(buf: Buffer, start: number, end: number, plan: RowPlan, masker: TextMasker): Buffer | undefined {
  if (!plan.always && !mayHoldPan(buf, start + 7, end)) return undefined;
  const n = buf.readInt16BE(start + 5);
  let p = start + 7;
  let replaced: (Buffer | undefined)[] | undefined;
  for (let i = 0; i < n; i++) {
    if (p + 4 > end) throw new ProtocolError('truncated DataRow');
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) continue;
    if (p + len > end) throw new ProtocolError('truncated DataRow');
    const kind = i < plan.cols.length ? plan.cols[i] : Col.Text;
    if (kind === Col.Text || kind === Col.NumberText) {
      if (mayHoldPan(buf, p, p + len)) masker.maskInPlace(buf, p, p + len, kind === Col.NumberText ? '0' : undefined);
    } else if (kind === Col.ByteaHex) {
      maskByteaHex(buf, p, p + len, masker);
    } else if (kind !== Col.Skip) {
      const r = maskValue(buf, p, p + len, kind, masker);
      if (r !== undefined) (replaced ??= new Array<Buffer | undefined>(n))[i] = r;
    }
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
    const v = len < 0 ? null : replaced[i] ?? buf.subarray(p, p + len);
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

function maskValue(buf: Buffer, start: number, end: number, kind: Col, masker: TextMasker): Buffer | undefined {
  switch (kind) {
    case Col.Skip:
      return undefined;
    case Col.Text:
    case Col.NumberText:
    case Col.JsonText: {
      if (!mayHoldPan(buf, start, end) && kind !== Col.JsonText) return undefined;
      const text = buf.toString('utf8', start, end);
      const masked = kind === Col.JsonText ? maskJsonSafe(text, masker) : masker.maskText(text, kind === Col.NumberText ? '0' : undefined);
      return masked === text ? undefined : Buffer.from(masked, 'utf8');
    }
    case Col.BinaryJsonb: {
      const text = buf.toString('utf8', start + 1, end);
      const masked = maskJsonSafe(text, masker);
      return masked === text ? undefined : Buffer.concat([buf.subarray(start, start + 1), Buffer.from(masked, 'utf8')]);
    }
    case Col.JsonArrayText: {
      const text = buf.toString('utf8', start, end);
      const masked = maskJsonArrayLiteral(text, masker);
      return masked === text ? undefined : Buffer.from(masked, 'utf8');
    }
    case Col.BinaryJsonArray:
      return maskBinaryJsonArray(buf, start, end, masker);
    case Col.BinaryInt8: {
      if (end - start !== 8) return undefined;
      const v = buf.readBigInt64BE(start);
      const text = v.toString();
      const masked = masker.maskText(text, '0');
      if (masked === text) return undefined;
      const b = Buffer.allocUnsafe(8);
      b.writeBigInt64BE(BigInt(masked));
      return b;
    }
    case Col.BinaryNumeric: {
      const text = decodeNumeric(buf, start, end);
      if (text === undefined) return undefined;
      const masked = masker.maskText(text, '0');
      return masked === text ? undefined : encodeNumeric(masked, buf.readInt16BE(start + 6));
    }
    case Col.Star: {
      const text = buf.toString('utf8', start, end);
      return Buffer.from('*'.repeat([...text].length), 'utf8');
    }
    case Col.StarNumber: {
      const b = Buffer.from(buf.subarray(start, end));
      for (let i = 0; i < b.length; i++) if (b[i] >= 0x30 && b[i] <= 0x39) b[i] = 0x30;
      return b;
    }
    case Col.StarBinary:
      return Buffer.alloc(end - start);
  }
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

// JSON that fails to parse (it is always valid from the server, but a json column
// keeps the input text as-is) is still masked as plain text.
function maskJsonSafe(text: string, masker: TextMasker): string {
  try {
    return masker.maskJson(text);
  } catch {
    return masker.maskText(text);
  }
}

/**
 * A json[]/jsonb[] array literal (`{"{\"cvv\": \"123\"}",NULL}`, any dimensions): every
 * element is unquoted, masked as JSON and quoted again (so card-data keys are starred
 * as in a json column). Text the walk cannot follow (never produced by array_out) is
 * masked as plain text: PANs are still found.
 */
export function maskJsonArrayLiteral(text: string, masker: TextMasker): string {
  let i = 0;
  let out = '';
  // Optional dimension decoration: [1:2]={...}
  if (text[0] === '[') {
    const eq = text.indexOf('=');
    if (eq < 0) return masker.maskText(text);
    out = text.slice(0, eq + 1);
    i = eq + 1;
  }
  let changed = false;
  while (i < text.length) {
    const c = text[i];
    if (c === '{' || c === '}' || c === ',' || c === ' ') {
      out += c;
      i++;
      continue;
    }
    let element: string;
    if (c === '"') {
      let j = i + 1;
      element = '';
      while (j < text.length && text[j] !== '"') {
        if (text[j] === '\\') j++;
        element += text[j] ?? '';
        j++;
      }
      if (j >= text.length) return masker.maskText(text);
      i = j + 1;
    } else {
      let j = i;
      while (j < text.length && text[j] !== ',' && text[j] !== '}') j++;
      element = text.slice(i, j);
      i = j;
      if (element === 'NULL') {
        out += element;
        continue;
      }
    }
    const masked = maskJsonSafe(element, masker);
    if (masked !== element) changed = true;
    out += '"' + masked.replace(/[\\"]/g, (m) => '\\' + m) + '"';
  }
  return changed ? out : text;
}

/** Binary array of json/jsonb: ndim, flags, element OID, (size, lower bound) per dimension, then (length, bytes) per element. */
function maskBinaryJsonArray(buf: Buffer, start: number, end: number, masker: TextMasker): Buffer | undefined {
  if (end - start < 12) return undefined;
  const ndim = buf.readInt32BE(start);
  const elemType = buf.readUInt32BE(start + 8);
  if (ndim < 0 || ndim > 6 || (elemType !== JSON_OID && elemType !== JSONB)) return undefined;
  let p = start + 12 + ndim * 8;
  if (p > end) throw new ProtocolError('truncated array value');
  const parts: Buffer[] = [buf.subarray(start, p)];
  let changed = false;
  while (p < end) {
    if (p + 4 > end) throw new ProtocolError('truncated array value');
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) {
      parts.push(buf.subarray(p - 4, p));
      continue;
    }
    if (p + len > end) throw new ProtocolError('truncated array value');
    const r = maskValue(buf, p, p + len, elemType === JSONB ? Col.BinaryJsonb : Col.JsonText, masker);
    if (r) {
      changed = true;
      const l = Buffer.allocUnsafe(4);
      l.writeInt32BE(r.length);
      parts.push(l, r);
    } else parts.push(buf.subarray(p - 4, p + len));
    p += len;
  }
  return changed ? Buffer.concat(parts) : undefined;
}

/** Binary numeric: ndigits, weight, sign, dscale, then base-10000 digits. */
export function decodeNumeric(buf: Buffer, start: number, end: number): string | undefined {
  if (end - start < 8) return undefined;
  const ndigits = buf.readInt16BE(start);
  const weight = buf.readInt16BE(start + 2);
  const sign = buf.readUInt16BE(start + 4);
  const dscale = buf.readInt16BE(start + 6);
  if (sign === 0xc000 || sign === 0xd000 || sign === 0xf000) return undefined; // NaN, ±Infinity
  if (end - start !== 8 + ndigits * 2) return undefined;
  let intPart = '';
  let frac = '';
  for (let i = 0; i < ndigits; i++) {
    const d = buf.readInt16BE(start + 8 + i * 2).toString().padStart(4, '0');
    if (i <= weight) intPart += d;
    else frac += d;
  }
  for (let i = ndigits; i <= weight; i++) intPart += '0000';
  if (weight < -1) frac = '0000'.repeat(-weight - 1) + frac;
  intPart = intPart.replace(/^0+/, '') || '0';
  frac = frac.padEnd(dscale, '0').slice(0, dscale);
  return (sign === 0x4000 ? '-' : '') + intPart + (dscale > 0 ? '.' + frac : '');
}

export function encodeNumeric(text: string, dscale: number): Buffer {
  const neg = text.startsWith('-');
  const [ip, fp = ''] = (neg ? text.slice(1) : text).split('.');
  const intDigits = ip.replace(/^0+/, '');
  const padInt = intDigits.padStart(Math.ceil(intDigits.length / 4) * 4, '0');
  const padFrac = fp.padEnd(Math.ceil(fp.length / 4) * 4, '0');
  const groups: number[] = [];
  for (let i = 0; i < padInt.length; i += 4) groups.push(Number(padInt.slice(i, i + 4)));
  let weight = groups.length - 1;
  for (let i = 0; i < padFrac.length; i += 4) groups.push(Number(padFrac.slice(i, i + 4)));
  while (groups.length && groups[groups.length - 1] === 0) groups.pop();
  while (groups.length && groups[0] === 0) {
    groups.shift();
    weight--;
  }
  const b = Buffer.alloc(8 + groups.length * 2);
  b.writeInt16BE(groups.length, 0);
  b.writeInt16BE(groups.length ? weight : 0, 2);
  b.writeUInt16BE(neg ? 0x4000 : 0, 4);
  b.writeInt16BE(dscale, 6);
  groups.forEach((g, i) => b.writeInt16BE(g, 8 + i * 2));
  return b;
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
