// Text-format values walked by type: array literals (`{…}`, any dimension, NULLs) and
// record literals (`(…)`) are split the way array_in/record_in read them, each element
// masked by its own type, and written back the way array_out/record_out quote. A
// starred value (a `spec.masking.columns` column, wherever it sits) becomes its
// type's starred form; a type with none (dates, booleans) becomes NULL.

import { V } from './value-types.js';
import type { TypeNode } from './value-types.js';
import type { TextMasker } from './result-mask.js';
import { maskFloatText, maskNumberText } from './number-mask.js';

/** The masked text of one value, null for NULL. `star` stars it whole. */
export function maskTextValue(text: string, n: TypeNode | undefined, star: boolean, masker: TextMasker): string | null {
  const v = n ? n.v : V.Unknown;
  if (star) return starText(text, n);
  switch (v) {
    case V.Text:
    case V.Harmless:
      return masker.maskText(text);
    case V.ShortNumber:
      return text;
    case V.Int8:
    case V.Xid8:
    case V.Numeric:
    case V.Money:
      return maskNumberText(text, masker);
    case V.Float8:
      return maskFloatText(text, masker);
    case V.Bytea:
      return maskByteaText(text, masker);
    case V.Json:
    case V.Jsonb:
      return maskJsonText(text, masker);
    case V.Uuid:
      return masker.maskText(text, '0');
    case V.Array:
      return maskArrayLiteral(text, n!.elem, false, masker);
    case V.Record:
      return maskRecordLiteral(text, n!, false, masker);
    case V.Unknown:
      return maskGuessed(text, masker);
  }
}

function starText(text: string, n: TypeNode | undefined): string | null {
  switch (n ? n.v : V.Unknown) {
    case V.Text:
    case V.Unknown:
      return '*'.repeat([...text].length);
    case V.ShortNumber:
    case V.Int8:
    case V.Xid8:
    case V.Numeric:
    case V.Money:
    case V.Float8:
      return text.replace(/[0-9]/g, '0');
    case V.Bytea:
      return '\\x' + '2a'.repeat(byteaLength(text));
    case V.Json:
    case V.Jsonb:
      return '"' + '*'.repeat(Math.max(1, [...text].length - 2)) + '"';
    case V.Uuid:
      return '00000000-0000-0000-0000-000000000000';
    case V.Harmless:
      return null;
    case V.Array:
      return maskArrayLiteral(text, n!.elem, true, undefined);
    case V.Record:
      return maskRecordLiteral(text, n!, true, undefined);
  }
}

function byteaLength(text: string): number {
  return text.startsWith('\\x') ? (text.length - 2) >> 1 : Buffer.byteLength(text.replace(/\\\\/g, '\\').replace(/\\[0-7]{3}/g, '.'), 'latin1');
}

/** bytea text: hex (`\x3431…`, the default) decoded, masked as text, re-encoded; escape format masked as it stands. */
export function maskByteaText(text: string, masker: TextMasker): string {
  if (!text.startsWith('\\x')) return masker.maskText(text);
  const raw = Buffer.from(text.slice(2), 'hex');
  return masker.maskInPlace(raw, 0, raw.length) > 0 ? '\\x' + raw.toString('hex') : text;
}

/** JSON text (json keeps its input as-is; invalid JSON cannot come from the server, but is masked as text then). */
export function maskJsonText(text: string, masker: TextMasker): string {
  try {
    return masker.maskJson(text);
  } catch {
    return masker.maskText(text);
  }
}

/** A value of a type the proxy does not know, or a COPY field with no type: JSON if it parses, bytea hex, a number, else text. */
export function maskGuessed(text: string, masker: TextMasker): string {
  const c = text[0];
  if (c === '{' || c === '[') {
    try {
      return masker.maskJson(text);
    } catch {
      // Not JSON: an array literal, its elements guessed in turn (json[] keeps card-data keys starred).
      if (c === '{') return maskArrayLiteral(text, undefined, false, masker);
    }
  }
  if (c === '(' && text[text.length - 1] === ')') return maskRecordLiteral(text, UNKNOWN_RECORD, false, masker);
  if (c === '\\' && text[1] === 'x' && /^\\x(?:[0-9a-fA-F]{2})*$/.test(text)) return maskByteaText(text, masker);
  if (/^[-+]?\$?[0-9][0-9,.]*$/.test(text)) {
    const m = maskNumberText(text, masker);
    if (m !== text) return m;
  }
  if (/^[-+]?[0-9.]+e[-+]?[0-9]+$/i.test(text)) return maskFloatText(text, masker);
  return masker.maskText(text);
}

const UNKNOWN_RECORD: TypeNode = { v: V.Record, oid: 2249, textAlways: false };

// --- array literals -------------------------------------------------------------------

/**
 * An array literal with every element masked by `elem` (or starred). Text the walk cannot
 * follow (array_out never writes it) is masked as plain text: PANs are still found.
 */
export function maskArrayLiteral(text: string, elem: TypeNode | undefined, star: boolean, masker: TextMasker | undefined): string {
  let i = 0;
  let out = '';
  if (text[0] === '[') {
    const eq = text.indexOf('=');
    if (eq < 0) return fallback(text, star, masker);
    out = text.slice(0, eq + 1);
    i = eq + 1;
  }
  let changed = false;
  while (i < text.length) {
    const c = text[i];
    if (c === '{' || c === '}' || c === ',') {
      out += c;
      i++;
      continue;
    }
    let element: string;
    let quoted = false;
    if (c === '"') {
      quoted = true;
      let j = i + 1;
      element = '';
      while (j < text.length && text[j] !== '"') {
        if (text[j] === '\\') j++;
        element += text[j] ?? '';
        j++;
      }
      if (j >= text.length) return fallback(text, star, masker);
      i = j + 1;
    } else {
      let j = i;
      while (j < text.length && text[j] !== ',' && text[j] !== '}') j++;
      element = text.slice(i, j);
      i = j;
    }
    if (!quoted && element.toUpperCase() === 'NULL') {
      out += element;
      continue;
    }
    const masked = star ? starText(element, elem) : maskTextValue(element, elem, false, masker!);
    if (masked !== element) changed = true;
    out += masked === null ? 'NULL' : quoteArrayElement(masked, quoted);
  }
  return changed ? out : text;
}

function quoteArrayElement(s: string, wasQuoted: boolean): string {
  if (!wasQuoted && s !== '' && !/[{}",\\\s]/.test(s) && s.toUpperCase() !== 'NULL') return s;
  return '"' + s.replace(/[\\"]/g, (m) => '\\' + m) + '"';
}

// --- record literals ------------------------------------------------------------------

/** A record literal with every field masked by its type (a composite's, or unknown for ROW(…)); starred fields starred. */
export function maskRecordLiteral(text: string, n: TypeNode, star: boolean, masker: TextMasker | undefined): string {
  if (text[0] !== '(' || text[text.length - 1] !== ')') return fallback(text, star, masker);
  const fields: (string | null)[] = [];
  let i = 1;
  const last = text.length - 1;
  for (;;) {
    let f = '';
    let any = false;
    while (i < last && text[i] !== ',') {
      const c = text[i];
      if (c === '"') {
        any = true;
        i++;
        while (i < last) {
          if (text[i] === '"') {
            if (text[i + 1] === '"') {
              f += '"';
              i += 2;
              continue;
            }
            break;
          }
          if (text[i] === '\\') i++;
          f += text[i] ?? '';
          i++;
        }
        if (i >= last) return fallback(text, star, masker);
        i++;
      } else {
        if (c === '\\') i++;
        f += text[i] ?? '';
        any = true;
        i++;
      }
    }
    fields.push(any ? f : null);
    if (i >= last) break;
    i++; // the comma
  }
  let changed = false;
  const out = fields.map((f, k) => {
    if (f === null) return null;
    const t = n.fields?.[k];
    const s = star || (n.starred?.[k] ?? false);
    const m = s ? starText(f, t) : maskTextValue(f, t, false, masker!);
    if (m !== f) changed = true;
    return m;
  });
  if (!changed) return text;
  return '(' + out.map((f) => (f === null ? '' : quoteRecordField(f))).join(',') + ')';
}

function quoteRecordField(s: string): string {
  if (s !== '' && !/[",\\()\s]/.test(s)) return s;
  return '"' + s.replace(/["\\]/g, (m) => m + m) + '"';
}

function fallback(text: string, star: boolean, masker: TextMasker | undefined): string {
  return star ? '*'.repeat([...text].length) : masker!.maskText(text);
}
