// Decides which digits of one "run" are masked. A run is the stretch of text the
// candidate rule can see at once: digit groups joined by single spaces or hyphens.
// Every sub-run of whole groups with 12–19 digits is a candidate; a candidate that
// is Luhn-valid and in a brand's IIN range is a PAN, and all of its digits except
// the kept ones are masked. The check is repeated on the masked view until nothing
// changes: the kept last four of `4111111111111111 4242 4242 4242` could otherwise
// start a new PAN with the groups after it, and the output would not be PAN-free.

import { brandOfPrefix, MAX_PAN_DIGITS, MIN_PAN_DIGITS } from './brands.js';

const SPACE = 0x20;
const HYPHEN = 0x2d;

export class RunEvaluator {
  /** flags[k] = 1 when byte k of the last evaluated run is a digit to mask. */
  flags: Uint8Array;
  private gStart: Int32Array;
  private gEnd: Int32Array;

  constructor(capacity = 1024) {
    this.flags = new Uint8Array(capacity);
    this.gStart = new Int32Array(capacity);
    this.gEnd = new Int32Array(capacity);
  }

  private ensure(len: number): void {
    if (this.flags.length >= len) return;
    let cap = this.flags.length * 2;
    while (cap < len) cap *= 2;
    this.flags = new Uint8Array(cap);
    this.gStart = new Int32Array(cap);
    this.gEnd = new Int32Array(cap);
  }

  /**
   * Evaluates src[off, off+len). With `openEnd`, a digit group touching the end is
   * still growing and takes no part in any candidate. Returns how many PANs whose
   * last digit lies in [countFrom, countTo) were found; sets `flags`.
   */
  evaluate(src: Uint8Array, off: number, len: number, openEnd: boolean, keepBin: boolean, countFrom = 0, countTo = len): number {
    this.ensure(len);
    const flags = this.flags;
    const gS = this.gStart;
    const gE = this.gEnd;
    flags.fill(0, 0, len);
    let count = 0;
    for (;;) {
      // Groups of the current view: digits not yet masked, maximal.
      let ng = 0;
      let k = 0;
      let digits = 0;
      while (k < len) {
        const c = src[off + k];
        if (c >= 0x30 && c <= 0x39 && flags[k] === 0) {
          const s = k;
          k++;
          while (k < len) {
            const d = src[off + k];
            if (d < 0x30 || d > 0x39 || flags[k] !== 0) break;
            k++;
          }
          gS[ng] = s;
          gE[ng] = k;
          ng++;
          digits += k - s;
        } else {
          k++;
        }
      }
      // Too few digits left for any candidate (the usual second pass after a PAN).
      if (digits < MIN_PAN_DIGITS) return count;
      const usable = openEnd && ng > 0 && gE[ng - 1] === len ? ng - 1 : ng;
      let changed = false;
      for (let last = 0; last < usable; last++) {
        let sum = 0;
        let t = 0;
        let total = 0;
        for (let i = last; i >= 0; i--) {
          if (i < last) {
            const gap = gE[i];
            if (gap + 1 !== gS[i + 1]) break;
            const sep = src[off + gap];
            if (sep !== SPACE && sep !== HYPHEN) break;
          }
          const glen = gE[i] - gS[i];
          if (total + glen > MAX_PAN_DIGITS) break;
          for (let p = gE[i] - 1; p >= gS[i]; p--) {
            let d = src[off + p] - 0x30;
            if ((t & 1) === 1) {
              d *= 2;
              if (d > 9) d -= 9;
            }
            sum += d;
            t++;
          }
          total += glen;
          if (total >= MIN_PAN_DIGITS && sum % 10 === 0 && brandOfPrefix(this.prefix6(src, off, i), total) !== undefined) {
            if (this.mark(i, last, total, keepBin)) changed = true;
            const end = gE[last] - 1;
            if (end >= countFrom && end < countTo) count++;
          }
        }
      }
      if (!changed) return count;
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

  private mark(first: number, last: number, total: number, keepBin: boolean): boolean {
    const flags = this.flags;
    let q = 0;
    let changed = false;
    const keepFrom = total - 4;
    for (let g = first; g <= last; g++) {
      for (let p = this.gStart[g]; p < this.gEnd[g]; p++, q++) {
        if (q >= keepFrom || (keepBin && q < 6)) continue;
        if (flags[p] === 0) {
          flags[p] = 1;
          changed = true;
        }
      }
    }
    return changed;
  }
}
