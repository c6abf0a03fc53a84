// What the PAN scanner sees in UTF-8 bytes, one character at a time: a decimal digit
// (ASCII, or any Unicode decimal digit: full-width ４, Arabic-Indic ٤, Devanagari ४ …,
// normalised to its value before any check), a separator that may sit between digit
// groups (space, tab, hyphen, dot, slash, underscore, and the Unicode spaces: NBSP,
// U+2000–200A, U+202F, U+205F, U+3000, U+1680), a comma (thousands), or anything
// else. Results go to module variables so the hot loops allocate nothing.

export const enum C {
  Other = 0,
  Digit = 1,
  Sep = 2,
  Comma = 3,
  /** A multi-byte character cut by the end of the bytes given. */
  Incomplete = 4,
}

export let cKind: C = C.Other;
/** The digit's value, for C.Digit. */
export let cVal = 0;
/** Bytes of the character (1 for an invalid byte). */
export let cLen = 1;

/** Unicode decimal digit blocks (general category Nd): first code point and size, in runs of ten. */
const ND: readonly (readonly [number, number])[] = [
  [0x660, 10], [0x6f0, 10], [0x7c0, 10], [0x966, 10], [0x9e6, 10], [0xa66, 10], [0xae6, 10], [0xb66, 10], [0xbe6, 10],
  [0xc66, 10], [0xce6, 10], [0xd66, 10], [0xde6, 10], [0xe50, 10], [0xed0, 10], [0xf20, 10], [0x1040, 10], [0x1090, 10],
  [0x17e0, 10], [0x1810, 10], [0x1946, 10], [0x19d0, 10], [0x1a80, 10], [0x1a90, 10], [0x1b50, 10], [0x1bb0, 10],
  [0x1c40, 10], [0x1c50, 10], [0xa620, 10], [0xa8d0, 10], [0xa900, 10], [0xa9d0, 10], [0xa9f0, 10], [0xaa50, 10],
  [0xabf0, 10], [0xff10, 10], [0x104a0, 10], [0x10d30, 10], [0x10d40, 10], [0x11066, 10], [0x110f0, 10], [0x11136, 10],
  [0x111d0, 10], [0x112f0, 10], [0x11450, 10], [0x114d0, 10], [0x11650, 10], [0x116c0, 10], [0x116d0, 20], [0x11730, 10],
  [0x118e0, 10], [0x11950, 10], [0x11bf0, 10], [0x11c50, 10], [0x11d50, 10], [0x11da0, 10], [0x11de0, 10], [0x11f50, 10],
  [0x16130, 10], [0x16a60, 10], [0x16ac0, 10], [0x16b50, 10], [0x16d70, 10], [0x1ccf0, 10], [0x1d7ce, 50], [0x1e140, 10],
  [0x1e2f0, 10], [0x1e4f0, 10], [0x1e5f1, 10], [0x1e950, 10], [0x1fbf0, 10],
];
const ND_START = Int32Array.from(ND, (r) => r[0]);
const ND_END = Int32Array.from(ND, (r) => r[0] + r[1]);

/** The value of Unicode decimal digit `cp`, or -1. */
export function unicodeDigit(cp: number): number {
  if (cp < 0x660) return cp >= 0x30 && cp <= 0x39 ? cp - 0x30 : -1;
  let lo = 0;
  let hi = ND_START.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ND_START[mid]) hi = mid - 1;
    else if (cp >= ND_END[mid]) lo = mid + 1;
    else return (cp - ND_START[mid]) % 10;
  }
  return -1;
}

export function isUnicodeSpace(cp: number): boolean {
  return cp === 0xa0 || cp === 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp === 0x202f || cp === 0x205f || cp === 0x3000;
}

/** ASCII bytes: 1 digit, 2 separator, 3 comma. */
const ASCII = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) ASCII[c] = C.Digit;
for (const c of ' \t-./_') ASCII[c.charCodeAt(0)] = C.Sep;
ASCII[0x2c] = C.Comma;

/**
 * UTF-8 lead bytes that can begin a Unicode digit or space: the scanner's search for a
 * run start stops at these (and at ASCII digits) and skips every other byte.
 */
export const DIGIT_LEAD = new Uint8Array(256);
for (const [s, n] of ND) {
  for (let cp = s; cp < s + n; cp++) DIGIT_LEAD[Buffer.from(String.fromCodePoint(cp))[0]] = 1;
}
/** Lead bytes of the Unicode spaces (inside a run only). */
const SPACE_LEAD = new Uint8Array(256);
for (const cp of [0xa0, 0x1680, 0x2000, 0x202f, 0x205f, 0x3000]) SPACE_LEAD[Buffer.from(String.fromCodePoint(cp))[0]] = 1;

/** Classifies the character at src[p] (p < end); sets cKind, cVal, cLen. */
export function classify(src: Uint8Array, p: number, end: number): void {
  const c = src[p];
  if (c < 0x80) {
    cKind = ASCII[c] as C;
    cVal = c - 0x30;
    cLen = 1;
    return;
  }
  cLen = 1;
  cKind = C.Other;
  if (DIGIT_LEAD[c] === 0 && SPACE_LEAD[c] === 0) return;
  const n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
  if (p + n > end) {
    // Cut: only a later byte says whether it is a digit. A continuation byte that is
    // already wrong settles it now.
    for (let q = p + 1; q < end; q++) if ((src[q] & 0xc0) !== 0x80) return;
    cKind = C.Incomplete;
    cLen = end - p;
    return;
  }
  let cp = n === 2 ? c & 0x1f : n === 3 ? c & 0x0f : c & 0x07;
  for (let q = p + 1; q < p + n; q++) {
    const b = src[q];
    if ((b & 0xc0) !== 0x80) return;
    cp = (cp << 6) | (b & 0x3f);
  }
  const v = unicodeDigit(cp);
  if (v >= 0) {
    cKind = C.Digit;
    cVal = v;
    cLen = n;
  } else if (isUnicodeSpace(cp)) {
    cKind = C.Sep;
    cLen = n;
  }
}

/** Whether UTF-16 code unit (or code point) `c` can be part of a run: a digit or separator of any script. */
export function isRunCodePoint(c: number): boolean {
  if (c < 0x80) return ASCII[c] !== 0 || c === 0x65 || c === 0x45 || c === 0x2b;
  return unicodeDigit(c) >= 0 || isUnicodeSpace(c) || (c >= 0xd800 && c <= 0xdfff);
}
