// PANs stored in number columns. A number cannot hold `*`, so a masked number keeps the
// digits core/mask keeps (the last four by default) and has zeros for the others: the
// PAN 4111111111111111 in an int8, numeric, money or float8 becomes 1111 (text format:
// `0000000000001111`), a value the driver still parses as its type. The digits looked
// at are the integer part and the whole digit string (integer and fraction), so a PAN
// followed by cents (`money`, `numeric(20,2)`) or by a float's exponent is found.

import type { TextMasker } from './result-mask.js';

/** Fewer digits than this cannot hold a PAN; a quick exit on the common case. */
const MIN_DIGITS = 12;

/**
 * The masked digit strings of a number written as `int`.`frac` (digits only), or
 * undefined when neither the integer part nor the whole holds a PAN.
 */
export function maskNumberDigits(int: string, frac: string, masker: TextMasker): [string, string] | undefined {
  if (int.length + frac.length < MIN_DIGITS) return undefined;
  let i = int.length >= MIN_DIGITS ? masker.maskText(int, '0') : int;
  let f = frac;
  if (frac.length) {
    const all = i + frac;
    const m = masker.maskText(all, '0');
    if (m !== all) {
      i = m.slice(0, i.length);
      f = m.slice(i.length);
    }
  }
  return i === int && f === frac ? undefined : [i, f];
}

/**
 * A number's text (`-4111111111111111.00`, `$4,111,111,111,111,111.00`) masked in place:
 * its digits are projected out (separators and currency signs skipped), masked as a
 * number, and written back at their positions. The fraction starts at the last `.`.
 */
export function maskNumberTextInPlace(buf: Buffer, start: number, end: number, masker: TextMasker): boolean {
  let digits = 0;
  let point = -1;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c >= 0x30 && c <= 0x39) digits++;
    else if (c === 0x2e) point = i;
    else if (c === 0x65 || c === 0x45) return false; // exponent: a float, handled by maskFloatText
  }
  if (digits < MIN_DIGITS) return false;
  let int = '';
  let frac = '';
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c >= 0x30 && c <= 0x39) {
      if (point >= 0 && i > point) frac += String.fromCharCode(c);
      else int += String.fromCharCode(c);
    }
  }
  const m = maskNumberDigits(int, frac, masker);
  if (!m) return false;
  const all = m[0] + m[1];
  let k = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c >= 0x30 && c <= 0x39) buf[i] = all.charCodeAt(k++);
  }
  return true;
}

/** The same on a string (a number inside an array or record literal). */
export function maskNumberText(text: string, masker: TextMasker): string {
  if (/[eE]/.test(text)) return maskFloatText(text, masker);
  const b = Buffer.from(text, 'latin1');
  return maskNumberTextInPlace(b, 0, b.length, masker) ? b.toString('latin1') : text;
}

/**
 * A float8 masked on its significant digits (shortest round-trip form, as drivers print
 * it): 4111111111111111 and 4.111111111111111e-7 both hold the PAN's digits. The masked
 * digits make a new double with the same exponent: 4111111111111111 → 1111.
 */
export function maskFloat(v: number, masker: TextMasker): number | undefined {
  if (!Number.isFinite(v) || v === 0) return undefined;
  const e = Math.abs(v).toExponential();
  const at = e.indexOf('e');
  let digits = e[0] + e.slice(2, at);
  const exp = Number(e.slice(at + 1));
  // 4457588064110400 prints as 4.4575880641104e+15: the integer's trailing zeros are digits too.
  if (exp + 1 > digits.length && exp < 19) digits = digits.padEnd(exp + 1, '0');
  if (digits.length < MIN_DIGITS) return undefined;
  const intLen = Math.max(0, Math.min(digits.length, exp + 1));
  const m = maskNumberDigits(digits.slice(0, intLen), digits.slice(intLen), masker);
  if (!m) return undefined;
  const masked = Number(`0.${m[0]}${m[1]}e${exp + 1}`);
  return v < 0 ? -masked : masked;
}

/** float8/float4 text (`4.111111111111111e+15`): masked on its value, rewritten in JavaScript's shortest form. */
export function maskFloatText(text: string, masker: TextMasker): string {
  const v = Number(text);
  if (Number.isNaN(v)) return text;
  const m = maskFloat(v, masker);
  return m === undefined ? text : String(m);
}
