// Which digit strings are card numbers: the Luhn check plus the brands' published
// IIN ranges and lengths. A number that is Luhn-valid but matches no brand (an
// order id, a phone number) is left alone, so masking does not eat ordinary data.

export type CardBrand = 'visa' | 'mastercard' | 'amex' | 'discover' | 'jcb' | 'diners' | 'unionpay' | 'maestro';

interface IinRange {
  brand: CardBrand;
  /** Number of leading digits `from`/`to` are written with. */
  digits: number;
  from: number;
  to: number;
  minLen: number;
  maxLen: number;
  /** Allowed lengths when they are not a contiguous span (Visa). */
  lengths?: readonly number[];
}

// Published ranges (ISO/IEC 7812 IINs as the networks document them). Ordered
// longest prefix first only for readability; every range is checked.
const RANGES: readonly IinRange[] = [
  { brand: 'visa', digits: 1, from: 4, to: 4, minLen: 13, maxLen: 19, lengths: [13, 16, 19] },
  { brand: 'mastercard', digits: 2, from: 51, to: 55, minLen: 16, maxLen: 16 },
  { brand: 'mastercard', digits: 4, from: 2221, to: 2720, minLen: 16, maxLen: 16 },
  { brand: 'amex', digits: 2, from: 34, to: 34, minLen: 15, maxLen: 15 },
  { brand: 'amex', digits: 2, from: 37, to: 37, minLen: 15, maxLen: 15 },
  { brand: 'discover', digits: 4, from: 6011, to: 6011, minLen: 16, maxLen: 19 },
  { brand: 'discover', digits: 3, from: 644, to: 649, minLen: 16, maxLen: 19 },
  { brand: 'discover', digits: 2, from: 65, to: 65, minLen: 16, maxLen: 19 },
  { brand: 'discover', digits: 6, from: 622126, to: 622925, minLen: 16, maxLen: 19 },
  { brand: 'jcb', digits: 4, from: 3528, to: 3589, minLen: 16, maxLen: 19 },
  { brand: 'diners', digits: 3, from: 300, to: 305, minLen: 14, maxLen: 19 },
  { brand: 'diners', digits: 4, from: 3095, to: 3095, minLen: 14, maxLen: 19 },
  { brand: 'diners', digits: 2, from: 36, to: 36, minLen: 14, maxLen: 19 },
  { brand: 'diners', digits: 2, from: 38, to: 39, minLen: 16, maxLen: 19 },
  { brand: 'unionpay', digits: 2, from: 62, to: 62, minLen: 16, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 5018, to: 5018, minLen: 12, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 5020, to: 5020, minLen: 12, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 5038, to: 5038, minLen: 12, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 5893, to: 5893, minLen: 12, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 6304, to: 6304, minLen: 12, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 6759, to: 6759, minLen: 12, maxLen: 19 },
  { brand: 'maestro', digits: 4, from: 6761, to: 6763, minLen: 12, maxLen: 19 },
];

export const MIN_PAN_DIGITS = 12;
export const MAX_PAN_DIGITS = 19;

const POW10 = [1, 10, 100, 1000, 10000, 100000, 1000000];

// Per length, the ranges that allow it: the check runs only after Luhn passed,
// but a flat list per length keeps it branch-light.
const BY_LENGTH: IinRange[][] = [];
for (let len = 0; len <= MAX_PAN_DIGITS; len++) {
  BY_LENGTH.push(RANGES.filter((r) => len >= r.minLen && len <= r.maxLen && (!r.lengths || r.lengths.includes(len))));
}

/**
 * The brand whose published IIN range and length match, or undefined.
 * `prefix6` is the first six digits as a number, `length` the digit count.
 */
export function brandOfPrefix(prefix6: number, length: number): CardBrand | undefined {
  if (length < MIN_PAN_DIGITS || length > MAX_PAN_DIGITS) return undefined;
  for (const r of BY_LENGTH[length]) {
    const p = Math.floor(prefix6 / POW10[6 - r.digits]);
    if (p >= r.from && p <= r.to) return r.brand;
  }
  return undefined;
}

// The hot question is only "is this any brand's IIN at this length": a table over
// 4-digit prefixes answers it with one load, bit (length - 12) per prefix. Ranges
// written with more than four digits mark their 4-digit prefixes for the full check.
const LENGTHS_BY_PREFIX4 = new Uint8Array(10000);
const EXACT_BY_PREFIX4 = new Uint8Array(10000);
for (const r of RANGES) {
  let bits = 0;
  for (let len = MIN_PAN_DIGITS; len <= MAX_PAN_DIGITS; len++) {
    if (len >= r.minLen && len <= r.maxLen && (!r.lengths || r.lengths.includes(len))) bits |= 1 << (len - MIN_PAN_DIGITS);
  }
  if (r.digits <= 4) {
    const scale = 10 ** (4 - r.digits);
    for (let p = r.from * scale; p < (r.to + 1) * scale; p++) LENGTHS_BY_PREFIX4[p] |= bits;
  } else {
    const scale = 10 ** (r.digits - 4);
    for (let p = Math.floor(r.from / scale); p <= Math.floor(r.to / scale); p++) EXACT_BY_PREFIX4[p] = 1;
  }
}

/**
 * Lengths (bit length - 12) some brand may have for numbers starting with the four
 * digits `p4`: a superset, confirm with isBranded. 0 for most prefixes.
 */
export function candidateLengths(p4: number): number {
  return EXACT_BY_PREFIX4[p4] !== 0 ? 0xff : LENGTHS_BY_PREFIX4[p4];
}

/** Whether some brand's published IIN range and length match: brandOfPrefix(...) !== undefined, faster. */
export function isBranded(prefix6: number, length: number): boolean {
  if (length < MIN_PAN_DIGITS || length > MAX_PAN_DIGITS) return false;
  const p4 = (prefix6 / 100) | 0;
  if (((LENGTHS_BY_PREFIX4[p4] >> (length - MIN_PAN_DIGITS)) & 1) !== 0) return true;
  return EXACT_BY_PREFIX4[p4] !== 0 && brandOfPrefix(prefix6, length) !== undefined;
}

/** Luhn (mod 10) over a string of ASCII digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

/** The brand of a bare digit string that is a valid PAN (Luhn, IIN range, length), or undefined. */
export function cardBrand(digits: string): CardBrand | undefined {
  if (!/^[0-9]{12,19}$/.test(digits) || !luhnValid(digits)) return undefined;
  return brandOfPrefix(Number(digits.slice(0, 6)), digits.length);
}

/**
 * Whether `s` is exactly one PAN: 12–19 digits, optionally grouped with single
 * spaces or hyphens, Luhn-valid and inside a brand's IIN range.
 */
export function isPan(s: string): boolean {
  if (!/^[0-9]+(?:[ -][0-9]+)*$/.test(s)) return false;
  return cardBrand(s.replace(/[ -]/g, '')) !== undefined;
}
