// Decides which digits of one "run" are masked. A run is the stretch of text the
// candidate rule can see at once: digit groups joined by links (chars.ts). Groups
// joined by separators (1–2 of space, tab, hyphen, dot, slash, underscore, Unicode
// spaces; a comma only before exactly three digits, as thousands are grouped) form a
// segment, and the candidates of a segment are
//   - every window of 13–19 consecutive digits, wherever it starts or ends (a PAN run
//     glued to other digits, `pan || '1225'`, is still found), and
//   - every 12-digit stretch of whole groups (Maestro's shortest, only when it stands
//     as written, since a 12-digit window inside longer digits is too often chance).
// A group followed by an exponent (`4.111111111111111e+15`, float8 and JSON number
// text) is also read as the integer it spells, so a PAN whose trailing zeros the
// exponent carries is found too. A candidate that is Luhn-valid and in a brand's IIN
// range is a PAN, and all of its digits except the kept ones are masked (every byte of
// a multi-byte digit). The check is repeated on the masked view until nothing
// changes: the kept last four of `4111111111111111 4242 4242 4242` could otherwise
// start a new PAN with the groups after it, and the output would not be PAN-free.

import { candidateLengths, isBranded, MAX_PAN_DIGITS, MIN_PAN_DIGITS } from './brands.js';
import { C, classify, cKind, cLen, cVal } from './chars.js';

/** Shortest window taken from inside longer digits; whole groups may have MIN_PAN_DIGITS. */
export const MIN_WINDOW_DIGITS = 13;

const L_BREAK = 0;
const L_SEP = 1;
const L_DOT = 2;
const L_COMMA = 3;
const L_EXP = 4;

export class RunEvaluator {
  /**
   * flags[k] = 1 when byte k of the last evaluated run is part of a digit to mask; valid
   * only when `marked` (no PAN found leaves the array untouched, to save clearing it).
   */
  flags: Uint8Array;
  marked = false;
  private newlyMasked = 0;
  // Per digit of the current view.
  private dVal: Uint8Array;
  private dPos: Int32Array;
  private dLen: Uint8Array;
  /** Prefix Luhn sums mod 10: digit i doubled when i is even (a) or odd (b). */
  private pA: Int32Array;
  private pB: Int32Array;
  /** 1 when the digit starts (bit 0) or ends (bit 1) a group. */
  private dEdge: Uint8Array;
  /** End of the segment the digit belongs to. */
  private dSegEnd: Int32Array;
  // Per group.
  private gFirst: Int32Array;
  private gEnd: Int32Array;
  private gByteEnd: Int32Array;
  /** Link from the previous group to this one. */
  private gLink: Uint8Array;
  /** The link is an exponent with a minus sign (not an integer). */
  private gNeg: Uint8Array;

  constructor(capacity = 1024) {
    this.flags = new Uint8Array(capacity);
    this.dVal = new Uint8Array(capacity);
    this.dPos = new Int32Array(capacity);
    this.dLen = new Uint8Array(capacity);
    this.pA = new Int32Array(capacity + 1);
    this.pB = new Int32Array(capacity + 1);
    this.dEdge = new Uint8Array(capacity);
    this.dSegEnd = new Int32Array(capacity);
    this.gFirst = new Int32Array(capacity);
    this.gEnd = new Int32Array(capacity);
    this.gByteEnd = new Int32Array(capacity);
    this.gLink = new Uint8Array(capacity);
    this.gNeg = new Uint8Array(capacity);
  }

  private ensure(len: number): void {
    if (this.flags.length >= len) return;
    let cap = this.flags.length * 2;
    while (cap < len) cap *= 2;
    this.flags = new Uint8Array(cap);
    this.dVal = new Uint8Array(cap);
    this.dPos = new Int32Array(cap);
    this.dLen = new Uint8Array(cap);
    this.pA = new Int32Array(cap + 1);
    this.pB = new Int32Array(cap + 1);
    this.dEdge = new Uint8Array(cap);
    this.dSegEnd = new Int32Array(cap);
    this.gFirst = new Int32Array(cap);
    this.gEnd = new Int32Array(cap);
    this.gByteEnd = new Int32Array(cap);
    this.gLink = new Uint8Array(cap);
    this.gNeg = new Uint8Array(cap);
  }

  /**
   * Evaluates src[off, off+len). With `openEnd`, the run goes on after `len`: a group
   * touching the end may still grow, so it ends no whole-group candidate and carries
   * no exponent. Returns how many PANs whose last digit lies in [countFrom, countTo)
   * were found; sets `flags` and `marked`.
   */
  evaluate(src: Uint8Array, off: number, len: number, openEnd: boolean, keepBin: boolean, countFrom = 0, countTo = len): number {
    this.ensure(len);
    this.marked = false;
    let count = 0;
    for (let pass = 0; ; pass++) {
      const nd = this.tokenize(src, off, len);
      if (nd < MIN_PAN_DIGITS && (pass > 0 || !this.hasExp)) return count;
      this.newlyMasked = 0;
      let changed = false;
      const { dVal, dPos, pA, pB, dEdge } = this;
      const lastOpen = openEnd && nd > 0 && dPos[nd - 1] + this.dLen[nd - 1] === len;
      const segEnd = this.dSegEnd;
      // By start digit: its first four digits say which lengths any brand allows (most: none).
      for (let a = 0; a + MIN_PAN_DIGITS <= nd; a++) {
        const lengths = candidateLengths(dVal[a] * 1000 + dVal[a + 1] * 100 + dVal[a + 2] * 10 + dVal[a + 3]);
        if (lengths === 0) continue;
        const limit = segEnd[a];
        for (let L = MIN_PAN_DIGITS; L <= MAX_PAN_DIGITS; L++) {
          const b = a + L;
          if (b > limit) break;
          if (((lengths >> (L - MIN_PAN_DIGITS)) & 1) === 0) continue;
          if (L < MIN_WINDOW_DIGITS && ((dEdge[a] & 1) === 0 || (dEdge[b - 1] & 2) === 0 || (lastOpen && b === nd))) continue;
          const sums = ((b - 1) & 1) === 0 ? pB : pA;
          if (sums[b] !== sums[a]) continue;
          const prefix6 = dVal[a] * 100000 + dVal[a + 1] * 10000 + dVal[a + 2] * 1000 + dVal[a + 3] * 100 + dVal[a + 4] * 10 + dVal[a + 5];
          if (!isBranded(prefix6, L)) continue;
          if (this.markDigits(a, b - 4, keepBin ? a + 6 : a, len)) changed = true;
          const at = dPos[b - 1];
          if (at >= countFrom && at < countTo) count++;
        }
      }
      if (pass === 0 && this.hasExp) {
        const n = this.exponents(src, off, len, openEnd, keepBin, countFrom, countTo);
        if (n > 0) {
          count += n;
          changed = true;
        }
      }
      // Another pass only when enough unmasked digits remain to form a candidate.
      if (!changed || nd - this.newlyMasked < MIN_PAN_DIGITS) return count;
    }
  }

  private hasExp = false;
  private ng = 0;

  /** Digits and groups of the current view (masked digits count as non-digits); returns the digit count. */
  private tokenize(src: Uint8Array, off: number, len: number): number {
    const { flags, dVal, dPos, dLen, pA, pB, dEdge, gFirst, gEnd, gByteEnd, gLink, gNeg } = this;
    const marked = this.marked;
    let nd = 0;
    let ng = 0;
    let inGroup = false;
    let hasExp = false;
    let k = 0;
    const end = off + len;
    while (k < len) {
      const c = src[off + k];
      let kind: C;
      let clen = 1;
      let v = c - 0x30;
      if (c < 0x80) kind = c >= 0x30 && c <= 0x39 ? C.Digit : C.Other;
      else {
        classify(src, off + k, end);
        kind = cKind;
        clen = cLen;
        v = cVal;
      }
      if (kind === C.Digit && !(marked && flags[k] !== 0)) {
        if (!inGroup) {
          const link = ng === 0 ? L_BREAK : this.link(src, off, gByteEnd[ng - 1], k);
          gLink[ng] = link;
          if (link === L_EXP) {
            hasExp = true;
            gNeg[ng] = this.negExp ? 1 : 0;
          }
          gFirst[ng] = nd;
          dEdge[nd] = 1;
          ng++;
          inGroup = true;
        } else dEdge[nd] = 0;
        dVal[nd] = v;
        dPos[nd] = k;
        dLen[nd] = clen;
        const w = v * 2 > 9 ? v * 2 - 9 : v * 2;
        // Kept mod 10: a window is Luhn-valid when its two ends' sums are equal.
        let x = pA[nd] + ((nd & 1) === 0 ? w : v);
        let y = pB[nd] + ((nd & 1) === 0 ? v : w);
        if (x >= 10) x -= 10;
        if (y >= 10) y -= 10;
        pA[nd + 1] = x;
        pB[nd + 1] = y;
        nd++;
        k += clen;
        gEnd[ng - 1] = nd;
        gByteEnd[ng - 1] = k;
      } else {
        if (inGroup) dEdge[nd - 1] |= 2;
        inGroup = false;
        k += clen;
      }
    }
    if (inGroup) dEdge[nd - 1] |= 2;
    // Segments: groups joined by separators; a comma joins only a group of exactly three digits.
    // dSegEnd[d]: the end (exclusive digit index) of the segment digit d is in.
    const dSegEnd = this.dSegEnd;
    let segFrom = 0;
    for (let g = 0; g < ng; g++) {
      const l = g + 1 < ng ? gLink[g + 1] : L_BREAK;
      const joined = l === L_SEP || l === L_DOT || (l === L_COMMA && gEnd[g + 1] - gFirst[g + 1] === 3);
      if (!joined) {
        for (let d = segFrom; d < gEnd[g]; d++) dSegEnd[d] = gEnd[g];
        segFrom = gEnd[g];
      }
    }
    this.ng = ng;
    this.hasExp = hasExp;
    return nd;
  }

  private negExp = false;

  /** What joins the group ending at byte `from` to the one starting at `to` (both relative to off). */
  private link(src: Uint8Array, off: number, from: number, to: number): number {
    const n = to - from;
    const c = src[off + from];
    if (n === 1) {
      if (c === 0x2e) return L_DOT;
      if (c === 0x2c) return L_COMMA;
    }
    if (c === 0x65 || c === 0x45) {
      if (n === 1) {
        this.negExp = false;
        return L_EXP;
      }
      const s = src[off + from + 1];
      if (n === 2 && (s === 0x2b || s === 0x2d)) {
        this.negExp = s === 0x2d;
        return L_EXP;
      }
      return L_BREAK;
    }
    if (n === 1) return ASCII_SEP[c] !== 0 ? L_SEP : c < 0x80 ? L_BREAK : this.unicodeLink(src, off + from, off + to);
    if (n === 2 && c < 0x80) return ASCII_SEP[c] !== 0 && ASCII_SEP[src[off + from + 1]] !== 0 ? L_SEP : L_BREAK;
    return this.unicodeLink(src, off + from, off + to);
  }

  /** One or two separator characters of any script exactly filling src[p, end). */
  private unicodeLink(src: Uint8Array, p: number, end: number): number {
    for (let seps = 0; seps < 2 && p < end; seps++) {
      classify(src, p, end);
      if (cKind !== C.Sep) return L_BREAK;
      p += cLen;
    }
    return p === end ? L_SEP : L_BREAK;
  }

  /**
   * Groups followed by an exponent, read as the integer they spell: `d.ddd` or `ddd`
   * then e/E, an optional +, and at most two digits. Returns the PANs found.
   */
  private exponents(src: Uint8Array, off: number, len: number, openEnd: boolean, keepBin: boolean, countFrom: number, countTo: number): number {
    const { gFirst, gEnd, gLink, gNeg, gByteEnd, dVal, dPos } = this;
    let count = 0;
    const digits = EXP_DIGITS;
    for (let x = 1; x < this.ng; x++) {
      if (gLink[x] !== L_EXP || gNeg[x] !== 0) continue;
      if (openEnd && gByteEnd[x] === len) continue;
      const ed = gEnd[x] - gFirst[x];
      if (ed > 2) continue;
      let e = 0;
      for (let d = gFirst[x]; d < gEnd[x]; d++) e = e * 10 + dVal[d];
      const g = x - 1;
      const hasFrac = g > 0 && gLink[g] === L_DOT;
      const intG = hasFrac ? g - 1 : g;
      const intFirst = gFirst[intG];
      const intLen = gEnd[intG] - intFirst;
      const fracFirst = hasFrac ? gFirst[g] : 0;
      const fracLen = hasFrac ? gEnd[g] - fracFirst : 0;
      const total = intLen + e;
      if (fracLen > e || total < MIN_PAN_DIGITS || total > MAX_PAN_DIGITS || dVal[intFirst] === 0) continue;
      let q = 0;
      for (let d = intFirst; d < intFirst + intLen; d++) digits[q++] = dVal[d];
      for (let d = fracFirst; d < fracFirst + fracLen; d++) digits[q++] = dVal[d];
      while (q < total) digits[q++] = 0;
      let sum = 0;
      for (let i = total - 1, dbl = false; i >= 0; i--, dbl = !dbl) {
        const v = digits[i];
        sum += dbl ? (v * 2 > 9 ? v * 2 - 9 : v * 2) : v;
      }
      if (sum % 10 !== 0) continue;
      const prefix6 = digits[0] * 100000 + digits[1] * 10000 + digits[2] * 1000 + digits[3] * 100 + digits[4] * 10 + digits[5];
      if (!isBranded(prefix6, total)) continue;
      // Mantissa digit i stands for digit i of the integer.
      const mantissa = intLen + fracLen;
      for (let i = 0; i < mantissa && i < total - 4; i++) {
        if (keepBin && i < 6) continue;
        const d = i < intLen ? intFirst + i : fracFirst + (i - intLen);
        this.markDigits(d, d + 1, d, len);
      }
      const lastD = hasFrac && fracLen > 0 ? fracFirst + fracLen - 1 : intFirst + intLen - 1;
      const at = dPos[lastD];
      if (at >= countFrom && at < countTo) count++;
    }
    return count;
  }

  /** Flags the bytes of digits [from, to) except those before `keepTo`... (digits [from, keepFrom) kept when keepBin). */
  private markDigits(first: number, to: number, maskFrom: number, len: number): boolean {
    const flags = this.flags;
    if (!this.marked) {
      flags.fill(0, 0, len);
      this.marked = true;
    }
    let changed = false;
    for (let d = maskFrom > first ? maskFrom : first; d < to; d++) {
      const p = this.dPos[d];
      if (flags[p] === 0) {
        const e = p + this.dLen[d];
        for (let q = p; q < e; q++) flags[q] = 1;
        this.newlyMasked++;
        changed = true;
      }
    }
    return changed;
  }
}

const EXP_DIGITS = new Uint8Array(MAX_PAN_DIGITS);
/** ASCII separators (chars.ts): space, tab, hyphen, dot, slash, underscore. */
const ASCII_SEP = new Uint8Array(256);
for (const c of ' \t-./_') ASCII_SEP[c.charCodeAt(0)] = 1;
