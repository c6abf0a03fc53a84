// Binary-format values decoded for masking, by type, recursively: integers, float8,
// numeric, money, the text types, bytea, json/jsonb, uuid, arrays (header with the
// element OID, any dimension, NULLs) and records (field count, then OID, length and
// bytes per field). What cannot be decoded is refused (UnmaskableError): a binary value
// the masker cannot see inside is never forwarded.

import { V } from './value-types.js';
import type { TypeCatalog, TypeNode } from './value-types.js';
import type { TextMasker } from './result-mask.js';
import { mayHoldPan } from './result-mask.js';
import { maskFloat, maskNumberDigits } from './number-mask.js';
import { decodeNumeric, encodeNumeric } from './numeric.js';
import { maskJsonText } from './text-values.js';

/** A binary value (or a field inside one) whose type the proxy cannot decode. */
export class UnmaskableError extends Error {}

/** The message a client sees when a result column cannot be masked in binary format. */
export function unmaskableMessage(type: string): string {
  return `agentgate: result values of type ${type} cannot be checked for card data in binary format; use text format for this column`;
}

/** Binary values up to this magnitude hold at most 11 digits: no PAN. */
const SMALL = 100_000_000_000n;

/**
 * Masks the binary value [start, end) of type `n`. Same-length changes are made in
 * place and give undefined; a value of another length comes back as a new buffer;
 * null means "send NULL" (a starred value whose type has no starred form).
 */
export function maskBinaryValue(buf: Buffer, start: number, end: number, n: TypeNode, star: boolean, types: TypeCatalog, masker: TextMasker): Buffer | null | undefined {
  if (star) return starBinary(buf, start, end, n, types);
  switch (n.v) {
    case V.Text:
    case V.Bytea:
      if (mayHoldPan(buf, start, end)) masker.maskInPlace(buf, start, end);
      return undefined;
    case V.ShortNumber:
    case V.Harmless:
      return undefined;
    case V.Int8:
    case V.Money: {
      if (end - start !== 8) throw new UnmaskableError(`malformed ${n.v === V.Int8 ? 'int8' : 'money'} value`);
      const v = buf.readBigInt64BE(start);
      if (v < SMALL && v > -SMALL) return undefined;
      const m = maskBigInt(v, n.v === V.Money ? 2 : 0, masker);
      if (m !== undefined) buf.writeBigInt64BE(m, start);
      return undefined;
    }
    case V.Xid8: {
      if (end - start !== 8) throw new UnmaskableError('malformed xid8 value');
      const v = buf.readBigUInt64BE(start);
      if (v < SMALL) return undefined;
      const m = maskBigInt(v, 0, masker);
      if (m !== undefined) buf.writeBigUInt64BE(m, start);
      return undefined;
    }
    case V.Float8: {
      if (end - start !== 8) throw new UnmaskableError('malformed float8 value');
      const m = maskFloat(buf.readDoubleBE(start), masker);
      if (m !== undefined) buf.writeDoubleBE(m, start);
      return undefined;
    }
    case V.Numeric: {
      const d = decodeNumeric(buf, start, end);
      if (d === undefined) return undefined; // NaN, ±Infinity
      if (d.int.length + d.frac.length < 12) return undefined;
      const m = maskNumberDigits(d.int, d.frac, masker);
      return m && encodeNumeric(d.negative, m[0], m[1], d.dscale);
    }
    case V.Json: {
      const text = buf.toString('utf8', start, end);
      const masked = maskJsonText(text, masker);
      return masked === text ? undefined : Buffer.from(masked, 'utf8');
    }
    case V.Jsonb: {
      if (end - start < 1 || buf[start] !== 1) throw new UnmaskableError('jsonb value of an unknown binary version');
      const text = buf.toString('utf8', start + 1, end);
      const masked = maskJsonText(text, masker);
      return masked === text ? undefined : Buffer.concat([buf.subarray(start, start + 1), Buffer.from(masked, 'utf8')]);
    }
    case V.Uuid: {
      if (end - start !== 16) throw new UnmaskableError('malformed uuid value');
      const hex = buf.toString('hex', start, end);
      const text = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
      if (!mayHoldPan(Buffer.from(text, 'latin1'), 0, text.length)) return undefined;
      const masked = masker.maskText(text, '0');
      if (masked !== text) buf.write(masked.replace(/-/g, ''), start, 'hex');
      return undefined;
    }
    case V.Array:
      return walkArray(buf, start, end, false, types, masker);
    case V.Record:
      return walkRecord(buf, start, end, n, false, types, masker);
    case V.Unknown:
      throw new UnmaskableError(`type with OID ${n.oid}`);
  }
}

function maskBigInt(v: bigint, fracDigits: number, masker: TextMasker): bigint | undefined {
  const neg = v < 0n;
  const s = (neg ? -v : v).toString();
  const int = fracDigits ? s.slice(0, Math.max(0, s.length - fracDigits)) : s;
  const m = maskNumberDigits(int, s.slice(int.length), masker);
  if (!m) return undefined;
  const r = BigInt(m[0] + m[1]);
  return neg ? -r : r;
}

function starBinary(buf: Buffer, start: number, end: number, n: TypeNode, types: TypeCatalog): Buffer | null | undefined {
  switch (n.v) {
    case V.Text: {
      const chars = [...buf.toString('utf8', start, end)].length;
      return Buffer.alloc(chars, '*');
    }
    case V.Bytea:
      buf.fill(0x2a, start, end);
      return undefined;
    case V.ShortNumber:
    case V.Int8:
    case V.Xid8:
    case V.Money:
    case V.Float8:
    case V.Uuid:
      buf.fill(0, start, end);
      return undefined;
    case V.Numeric: {
      // Zero with the value's display scale: ndigits 0, weight 0, sign +, dscale.
      const b = Buffer.alloc(8);
      if (end - start >= 8) b.writeInt16BE(buf.readInt16BE(start + 6), 6);
      return b;
    }
    case V.Json:
      return Buffer.from('"***"');
    case V.Jsonb:
      return Buffer.from('\x01"***"', 'latin1');
    case V.Harmless:
      return null;
    case V.Array:
      return walkArray(buf, start, end, true, types, undefined);
    case V.Record:
      return walkRecord(buf, start, end, n, true, types, undefined);
    case V.Unknown:
      return null;
  }
}

/** ndim, has-nulls flag, element OID, (size, lower bound) per dimension, then (length, bytes) per element. */
function walkArray(buf: Buffer, start: number, end: number, star: boolean, types: TypeCatalog, masker: TextMasker | undefined): Buffer | undefined {
  if (end - start < 12) throw new UnmaskableError('truncated array value');
  const ndim = buf.readInt32BE(start);
  const elemOid = buf.readUInt32BE(start + 8);
  if (ndim < 0 || ndim > 6) throw new UnmaskableError('array value with an invalid dimension count');
  const elem = types.node(elemOid);
  if (!elem || elem.v === V.Unknown) throw new UnmaskableError(`array of the type with OID ${elemOid}`);
  let count = ndim === 0 ? 0 : 1;
  for (let d = 0; d < ndim; d++) count *= buf.readInt32BE(start + 12 + d * 8);
  const p0 = start + 12 + ndim * 8;
  if (p0 > end) throw new UnmaskableError('truncated array value');
  return walkElements(buf, start, p0, end, count, () => elem, star, types, masker, -1);
}

/** Field count, then per field: OID, length (-1 for NULL), bytes. */
function walkRecord(buf: Buffer, start: number, end: number, n: TypeNode, star: boolean, types: TypeCatalog, masker: TextMasker | undefined): Buffer | undefined {
  if (end - start < 4) throw new UnmaskableError('truncated record value');
  const count = buf.readInt32BE(start);
  return walkElements(buf, start, start + 4, end, count, (oid) => types.node(oid), star, types, masker, 0, n.starred);
}

/**
 * Elements (array) or fields (record: each with its OID first, `oidWidth` 0 means it
 * is read). Returns a rebuilt value only when an element changed length or became NULL.
 */
function walkElements(
  buf: Buffer,
  start: number,
  p0: number,
  end: number,
  count: number,
  typeOf: (oid: number) => TypeNode | undefined,
  star: boolean,
  types: TypeCatalog,
  masker: TextMasker | undefined,
  arrayMarker: number,
  starred?: boolean[],
): Buffer | undefined {
  const record = arrayMarker === 0;
  let p = p0;
  let parts: Buffer[] | undefined;
  let copied = start;
  let nulled = false;
  for (let i = 0; i < count; i++) {
    let t: TypeNode | undefined;
    let oid = 0;
    if (record) {
      if (p + 4 > end) throw new UnmaskableError('truncated record value');
      oid = buf.readUInt32BE(p);
      p += 4;
      t = typeOf(oid);
    } else t = typeOf(0);
    if (p + 4 > end) throw new UnmaskableError('truncated value');
    const len = buf.readInt32BE(p);
    const at = p;
    p += 4;
    if (len < 0) continue;
    if (p + len > end) throw new UnmaskableError('truncated value');
    if (!t || t.v === V.Unknown) {
      if (star) t = undefined;
      else throw new UnmaskableError(`record field of the type with OID ${oid}`);
    }
    const s = star || (starred?.[i] ?? false);
    const r = t ? (s ? starBinary(buf, p, p + len, t, types) : maskBinaryValue(buf, p, p + len, t, false, types, masker!)) : null;
    if (r !== undefined) {
      parts ??= [];
      parts.push(buf.subarray(copied, at));
      const l = Buffer.allocUnsafe(4);
      l.writeInt32BE(r === null ? -1 : r.length);
      if (r === null) nulled = true;
      parts.push(l);
      if (r !== null) parts.push(r);
      copied = p + len;
    }
    p += len;
  }
  if (p !== end) throw new UnmaskableError('value longer than its elements');
  if (!parts) return undefined;
  parts.push(buf.subarray(copied, end));
  const out = Buffer.concat(parts);
  // A NULL element in an array needs the has-nulls flag.
  if (!record && nulled) out.writeInt32BE(1, 4);
  return out;
}
