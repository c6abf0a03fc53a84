// Decides which digits of one "run" are masked. A run is the stretch of text the
// candidate rule can see at once: digit groups joined by single spaces or hyphens.
// Every sub-run of whole groups with 12–19 digits is a candidate; a candidate that
// is Luhn-valid and in a brand's IIN range is a PAN, and all of its digits except
// the kept ones are masked. The check is repeated on the masked view until nothing
// changes: the kept last four of `4111111111111111 4242 4242 4242` could otherwise
// start a new PAN with the groups after it, and the output would not be PAN-free.

import { isBranded, MAX_PAN_DIGITS, MIN_PAN_DIGITS } from './brands.js';

const SPACE = 0x20;
const HYPHEN = 0x2d;

export class RunEvaluator {
  /**
   * flags[k] = 1 when byte k of the last evaluated run is a digit to mask; valid
   * only when `marked` (no PAN found leaves the array untouched, to save clearing it).
   */
  flags: Uint8Array;
  marked = false;
  /** Digits masked by the current pass. */
  private newlyMasked = 0;
  private gStart: Int32Array;
  private gEnd: Int32Array;
  /** Digits in groups [0, g) (index g). */
  private pDigits: Int32Array;
  /**
   * Prefix Luhn sums over groups [0, g), for candidates whose total digit count up
   * to their end is even (s0) or odd (s1): a candidate's Luhn sum is a difference.
   */
  private s0: Int32Array;
  private s1: Int32Array;
  /** First group of the separator-linked stretch that group g belongs to. */
  private segStart: Int32Array;

  constructor(capacity = 1024) {
    this.flags = new Uint8Array(capacity);
    this.gStart = new Int32Array(capacity);
    this.gEnd = new Int32Array(capacity);
    this.pDigits = new Int32Array(capacity + 1);
    this.s0 = new Int32Array(capacity + 1);
    this.s1 = new Int32Array(capacity + 1);
    this.segStart = new Int32Array(capacity);
  }

  private ensure(len: number): void {
    if (this.flags.length >= len) return;
    let cap = this.flags.length * 2;
    while (cap < len) cap *= 2;
    this.flags = new Uint8Array(cap);
    this.gStart = new Int32Array(cap);
    this.gEnd = new Int32Array(cap);
    this.pDigits = new Int32Array(cap + 1);
    this.s0 = new Int32Array(cap + 1);
    this.s1 = new Int32Array(cap + 1);
    this.segStart = new Int32Array(cap);
  }

  /**
   * Evaluates src[off, off+len). With `openEnd`, a digit group touching the end is
   * still growing and takes no part in any candidate. Returns how many PANs whose
   * last digit lies in [countFrom, countTo) were found; sets `flags` and `marked`.
   */
  evaluate(src: Uint8Array, off: number, len: number, openEnd: boolean, keepBin: boolean, countFrom = 0, countTo = len): number {
    this.ensure(len);
    this.marked = false;
    const flags = this.flags;
    const gS = this.gStart;
    const gE = this.gEnd;
    const pD = this.pDigits;
    const s0 = this.s0;
    const s1 = this.s1;
    const seg = this.segStart;
    let count = 0;
    for (;;) {
      // Groups of the current view: digits not yet masked, maximal.
      const marked = this.marked;
      let ng = 0;
      let k = 0;
      let digits = 0;
      while (k < len) {
        const c = src[off + k];
        if (c >= 0x30 && c <= 0x39 && !(marked && flags[k] !== 0)) {
          const s = k;
          k++;
          while (k < len) {
            const d = src[off + k];
            if (d < 0x30 || d > 0x39 || (marked && flags[k] !== 0)) break;
            k++;
          }
          gS[ng] = s;
          gE[ng] = k;
          // Luhn sum of the group when its last digit is not doubled (a) or doubled (b).
          let a = 0;
          let b = 0;
          let dbl = false;
          for (let p = k - 1; p >= s; p--) {
            const v = src[off + p] - 0x30;
            const w = v * 2 > 9 ? v * 2 - 9 : v * 2;
            if (dbl) {
              a += w;
              b += v;
            } else {
              a += v;
              b += w;
            }
            dbl = !dbl;
          }
          const linked = ng > 0 && gE[ng - 1] + 1 === s && (src[off + s - 1] === SPACE || src[off + s - 1] === HYPHEN);
          seg[ng] = linked ? seg[ng - 1] : ng;
          const upTo = digits + (k - s);
          // In a candidate ending where `end` digits have been counted, this group's last
          // digit is doubled when end - upTo is odd.
          pD[ng] = digits;
          pD[ng + 1] = upTo;
          s0[ng + 1] = s0[ng] + ((upTo & 1) === 0 ? a : b);
          s1[ng + 1] = s1[ng] + ((upTo & 1) === 1 ? a : b);
          ng++;
          digits = upTo;
        } else {
          k++;
        }
      }
      // Too few digits left for any candidate (the usual second pass after a PAN).
      if (digits < MIN_PAN_DIGITS) return count;
      const usable = openEnd && ng > 0 && gE[ng - 1] === len ? ng - 1 : ng;
      let changed = false;
      this.newlyMasked = 0;
      // Candidates ending at group `last` start at groups whose digit count to the
      // end is 12..19; both bounds only move right as `last` does.
      let lo = 0;
      let hi = -1;
      for (let last = 0; last < usable; last++) {
        const end = pD[last + 1];
        while (end - pD[lo] > MAX_PAN_DIGITS) lo++;
        while (hi < last && end - pD[hi + 1] >= MIN_PAN_DIGITS) hi++;
        const from = lo > seg[last] ? lo : seg[last];
        const sums = (end & 1) === 0 ? s0 : s1;
        for (let i = hi; i >= from; i--) {
          if ((sums[last + 1] - sums[i]) % 10 !== 0) continue;
          const total = end - pD[i];
          if (!isBranded(this.prefix6(src, off, i), total)) continue;
          if (this.mark(i, last, total, keepBin, len)) changed = true;
          const at = gE[last] - 1;
          if (at >= countFrom && at < countTo) count++;
        }
      }
      // Another pass only when enough unmasked digits remain to form a candidate.
      if (!changed || digits - this.newlyMasked < MIN_PAN_DIGITS) return count;
    }
  }

  private prefix6(src: Uint8Array, off: number, first: number): number {
    let p = 0;
    let n = 0;
    for (let g = first; n < 6; g++) {
      for (let q = this.gStart[g]; q < this.gEnd[g] && n < 6; q++, n++) p = p * 10 + (src[off + q] - 0x30);
    }
    return p;
  }

  private mark(first: number, last: number, total: number, keepBin: boolean, len: number): boolean {
    const flags = this.flags;
    if (!this.marked) {
      flags.fill(0, 0, len);
      this.marked = true;
    }
    let q = 0;
    let changed = false;
    const keepFrom = total - 4;
    for (let g = first; g <= last; g++) {
      for (let p = this.gStart[g]; p < this.gEnd[g]; p++, q++) {
        if (q >= keepFrom || (keepBin && q < 6)) continue;
        if (flags[p] === 0) {
          flags[p] = 1;
          this.newlyMasked++;
          changed = true;
        }
      }
    }
    return changed;
  }
}
