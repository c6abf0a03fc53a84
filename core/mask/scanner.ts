// The byte-level PAN scanner shared by text and JSON masking. It walks bytes once,
// lets everything that is not part of a digit run pass untouched (as views of the
// input), and hands each run to the RunEvaluator. A run is digit groups joined by
// links: one or two separators (chars.ts), a comma, or an exponent (`e`, `e+`, `E-`).
// A run that reaches the end of a chunk is held back and finished with the next
// chunk, so output never depends on where the input was cut; the hold-back is
// bounded by RUN_WINDOW bytes, because a longer run is decided window by window (a
// PAN spans at most ~190 bytes even in 4-byte digits with two 3-byte spaces between
// each, and each window sees more than that on both sides of the bytes it releases).

import { C, classify, cKind, cLen, DIGIT_LEAD } from './chars.js';
import { isBranded, MAX_PAN_DIGITS, MIN_PAN_DIGITS } from './brands.js';
import { MIN_WINDOW_DIGITS } from './pan-runs.js';
import type { Output } from './output.js';
import { RunEvaluator } from './pan-runs.js';

/** Most bytes of one run held back at once. */
export const RUN_WINDOW = 4096;
/** Bytes at a window's end that are not released yet (beyond any PAN's reach). */
const RELEASE_MARGIN = 256;
/** A new window restarts this far back, to see PANs that cross the cut. */
const CONTEXT = 512;

/** Index of the first byte in src[i, end) that may start a digit, or end. */
function nextDigit(src: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = src[i];
    if ((c >= 0x30 && c <= 0x39) || DIGIT_LEAD[c] !== 0) return i;
    i++;
  }
  return end;
}

/**
 * Per byte of x, 0x80 when the byte is an ASCII digit or not ASCII, else 0: the SWAR
 * "byte between m and n" test with m = 0x2f, n = 0x3a, plus the high bit. Exact for
 * every byte value, so the lowest set bit is the first such byte.
 */
function digitMask(x: number): number {
  const lo = x & 0x7f7f7f7f;
  return (((0xb9b9b9b9 - lo) & ~x & (lo + 0x50505050)) | x) & 0x80808080;
}

/**
 * nextDigit four bytes at a time over `words` (a Uint32Array over src's whole
 * buffer, little-endian). The word holding i is read whole with the bytes before
 * i masked off, so there is no byte loop to reach alignment.
 */
function nextDigitWords(src: Uint8Array, words: Uint32Array, i: number, end: number): number {
  const base = src.byteOffset;
  for (;;) {
    const p = base + i;
    let w = p >> 2;
    const wlast = (base + end) >> 2;
    if (w >= wlast) return nextDigit(src, i, end);
    let m = digitMask(words[w]) & (-1 << ((p & 3) << 3));
    while (m === 0) {
      if (++w === wlast) return nextDigit(src, (w << 2) - base, end);
      m = digitMask(words[w]);
    }
    const at = (w << 2) - base + ((31 - Math.clz32(m & -m)) >> 3);
    const c = src[at];
    if (c < 0x80 || DIGIT_LEAD[c] !== 0) return at;
    // A non-ASCII byte that begins no digit: go on after it.
    i = at + 1;
    if (i >= end) return end;
  }
}

const groupDigits = new Uint8Array(MAX_PAN_DIGITS);

/**
 * A run that is one group src[s, e) of 12–19 ASCII digits, with the evaluator's
 * candidates (the whole group; windows of 13+ digits). Returns 0 for no PAN, the PAN
 * as (offset << 8 | length) when there is exactly one and what it leaves unmasked
 * cannot form another, or -1 when the evaluator must decide.
 */
function singleGroup(src: Uint8Array, s: number, e: number, keepBin: boolean): number {
  const n = e - s;
  const d = groupDigits;
  for (let k = 0; k < n; k++) d[k] = src[s + k] - 0x30;
  let found = -1;
  for (let L = n; L >= MIN_PAN_DIGITS; L--) {
    if (L < n && L < MIN_WINDOW_DIGITS) break;
    for (let a = 0; a + L <= n; a++) {
      let sum = 0;
      let dbl = false;
      for (let q = a + L - 1; q >= a; q--) {
        const v = d[q];
        sum += dbl ? (v * 2 > 9 ? v * 2 - 9 : v * 2) : v;
        dbl = !dbl;
      }
      if (sum % 10 !== 0) continue;
      if (!isBranded(d[a] * 100000 + d[a + 1] * 10000 + d[a + 2] * 1000 + d[a + 3] * 100 + d[a + 4] * 10 + d[a + 5], L)) continue;
      if (found >= 0) return -1;
      found = (a << 8) | L;
    }
  }
  if (found < 0) return 0;
  // What stays unmasked (kept digits and the rest of the group) could form another candidate.
  if (n - ((found & 0xff) - (keepBin ? 10 : 4)) >= MIN_PAN_DIGITS) return -1;
  return found;
}

/** nextDigitWords reads byte positions out of words as a little-endian machine lays them out. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** ASCII bytes no run contains (not a digit, separator, comma or exponent character). */
const HARD_STOP = new Uint8Array(256);
for (let c = 0; c < 0x80; c++) HARD_STOP[c] = 1;
for (const c of '0123456789 \t-./_,eE+') HARD_STOP[c.charCodeAt(0)] = 0;

/** ASCII separators and the comma: one of them then a HARD_STOP byte ends a run. */
const SINGLE_SEP = new Uint8Array(256);
for (const c of ' \t-./_,') SINGLE_SEP[c.charCodeAt(0)] = 1;

/** Below this many bytes the word view is not worth creating. */
const WORDS_MIN = 256;

// One evaluator for every scanner: it keeps nothing between calls (its flags are
// read right after each synchronous evaluate), so sharing it saves each masker
// (one per proxied response) its buffers.
const sharedEvaluator = new RunEvaluator(RUN_WINDOW);

// What collectRun found (module variables: no allocation per run).
/** End of the run's last digit. */
let runEnd = 0;
/** The run may go on past `end` (only without `final`). */
let runOpen = false;
let runDigits = 0;
let runExp = false;

/**
 * The run starting at src[i] (a digit, or a cut lead byte that may be one).
 * With `final`, the byte after `end` belongs to no run.
 */
function collectRun(src: Uint8Array, i: number, end: number, final: boolean): void {
  let p = i;
  let lastDigitEnd = i;
  let digits = 0;
  let exp = false;
  let open = false;
  for (;;) {
    if (p >= end) {
      open = !final;
      break;
    }
    const c = src[p];
    if (c >= 0x30 && c <= 0x39) {
      p++;
      digits++;
      lastDigitEnd = p;
      continue;
    }
    // The usual end of a run: a byte no run contains.
    if (HARD_STOP[c] !== 0) break;
    classify(src, p, end);
    if (cKind === C.Digit) {
      p += cLen;
      digits++;
      lastDigitEnd = p;
      continue;
    }
    if (cKind === C.Incomplete) {
      open = !final;
      break;
    }
    // A link, then a digit, or the run ends at its last digit.
    let q = p;
    let isExp = false;
    if (c === 0x65 || c === 0x45) {
      q++;
      if (q < end && (src[q] === 0x2b || src[q] === 0x2d)) q++;
      isExp = true;
    } else if (cKind === C.Comma) {
      q++;
    } else if (cKind === C.Sep) {
      q += cLen;
      if (q < end) {
        classify(src, q, end);
        if (cKind === C.Sep) q += cLen;
        else if (cKind === C.Incomplete) {
          open = !final;
          break;
        }
      }
    } else break;
    if (q >= end) {
      open = !final;
      break;
    }
    const d = src[q];
    if (d >= 0x30 && d <= 0x39) {
      exp ||= isExp;
      p = q;
      continue;
    }
    if (d < 0x80) break;
    classify(src, q, end);
    if ((cKind as C) === C.Digit) {
      exp ||= isExp;
      p = q;
      continue;
    }
    if ((cKind as C) === C.Incomplete) open = !final;
    break;
  }
  runEnd = lastDigitEnd;
  runOpen = open;
  runDigits = digits;
  runExp = exp;
}

export class PanScanner {
  /** PANs found since the counter was last read (see takeCount). */
  private count = 0;
  /** Bytes of a run cut by a chunk end, not yet decided. */
  private held: Uint8Array | null = null;
  /** held[0, released) has already been written out (a window released it). */
  private released = 0;
  private readonly evaluator = sharedEvaluator;
  /**
   * After scanInPlace: where it stopped because a run needs the general path
   * (longer than a window), or -1 when it masked everything.
   */
  bailAt = -1;

  constructor(
    public out: Output,
    public keepBin: boolean,
    public fill: number,
  ) {}

  takeCount(): number {
    const n = this.count;
    this.count = 0;
    return n;
  }

  /** True when the next bytes cannot change anything already seen: no run held. */
  get idle(): boolean {
    return this.held === null;
  }

  /**
   * Masks src[start, end) as text. A run touching `end` stays open for the next
   * call, unless `final` says the byte after `end` belongs to no run (a closing
   * quote): then it is decided at once, as scan + boundary would.
   */
  scan(src: Uint8Array, start: number, end: number, final = false): void {
    while (this.held !== null && start < end) {
      // The held run continues in this chunk: decide it over the held bytes and the
      // chunk's bytes up to the first one no run can contain (bounded by the window).
      const held = this.held;
      let stop = start;
      const limit = Math.min(end, start + RUN_WINDOW + 16);
      while (stop < limit && HARD_STOP[src[stop]] === 0) stop++;
      const take = stop < limit ? stop + 1 : limit;
      const joined = new Uint8Array(held.length + (take - start));
      joined.set(held);
      joined.set(src.subarray(start, take), held.length);
      const released = this.released;
      this.held = null;
      this.released = 0;
      this.run(joined, 0, joined.length, final && take === end, false, released);
      start = take;
    }
    if (start < end) this.run(src, start, end, final, false, 0);
    else if (final) this.boundary();
  }

  /**
   * Masks src[start, end) in place, all of it final (nothing held). Stops at the
   * first run longer than a window and sets `bailAt` to its start (bytes before it
   * are done; scanning from there with `scan` finishes the job, since a run
   * starting after a non-run byte is decided without what precedes it).
   */
  scanInPlace(src: Uint8Array, start: number, end: number): void {
    this.bailAt = -1;
    this.run(src, start, end, true, true, 0);
  }

  /** The input is discontinued by a byte that belongs to no run (end of a JSON string, end of stream). */
  boundary(): void {
    const held = this.held;
    if (held === null) return;
    const released = this.released;
    this.held = null;
    this.released = 0;
    this.run(held, 0, held.length, true, false, released);
  }

  /** Forgets held bytes without writing them (fail closed after an error). */
  discard(): void {
    this.held = null;
    this.released = 0;
  }

  /**
   * Scans src[i, end). `released` bytes of a run starting at i were written out
   * already (by an earlier window).
   */
  private run(src: Uint8Array, i: number, end: number, final: boolean, inPlace: boolean, released: number): void {
    const out = this.out;
    let passFrom = i + released;
    const words = LITTLE_ENDIAN && end - i >= WORDS_MIN ? new Uint32Array(src.buffer, 0, src.buffer.byteLength >> 2) : null;
    for (;;) {
      // (A held run starts at its first digit, so the search finds it at once.)
      i = words === null ? nextDigit(src, i, end) : nextDigitWords(src, words, i, end);
      if (i === end) break;
      // Most digit groups in text are short numbers standing alone: skip them (and the
      // byte after them, or a separator and the byte after it) without the run machinery.
      let q = i;
      while (q < end && src[q] >= 0x30 && src[q] <= 0x39) q++;
      if (q - i < MIN_PAN_DIGITS && q + 2 < end && q > i) {
        const after = src[q];
        if (HARD_STOP[after] !== 0) {
          i = q + 1;
          continue;
        }
        if (SINGLE_SEP[after] !== 0 && HARD_STOP[src[q + 1]] !== 0) {
          i = q + 2;
          continue;
        }
      }
      collectRun(src, i, end, final);
      if (runEnd === i) {
        // A cut lead byte that may be a digit.
        if (runOpen) {
          this.hold(src, i, end, passFrom);
          return;
        }
        i++;
        continue;
      }
      // Short numbers standing alone: nothing to decide.
      if (!runOpen && runDigits < MIN_PAN_DIGITS && !runExp) {
        i = runEnd;
        continue;
      }
      // Windows over a run longer than RUN_WINDOW (content-determined, so cut-independent).
      let ws = i;
      while (runEnd - ws > RUN_WINDOW) {
        if (inPlace) {
          this.bailAt = i;
          return;
        }
        const releaseTo = ws + RUN_WINDOW - RELEASE_MARGIN;
        this.count += this.evaluator.evaluate(src, ws, RUN_WINDOW, true, this.keepBin, passFrom - ws, releaseTo - ws);
        this.emit(src, ws, passFrom, releaseTo);
        passFrom = releaseTo;
        let cs = releaseTo - CONTEXT;
        while (!this.startsRun(src, cs, end)) cs++;
        ws = cs;
      }
      if (runOpen) {
        this.hold(src, ws, end, passFrom);
        return;
      }
      const len = runEnd - ws;
      if (ws === i && passFrom <= ws && len === runDigits && len <= MAX_PAN_DIGITS && !runExp) {
        // One group of ASCII digits that could hold at most one PAN (the common card
        // number written plainly): decided here; anything less simple goes on below.
        const pan = singleGroup(src, ws, runEnd, this.keepBin);
        if (pan === 0) {
          i = runEnd;
          continue;
        }
        if (pan > 0) {
          const a = ws + (pan >> 8);
          const b = a + (pan & 0xff);
          const fill = this.fill;
          const from = this.keepBin ? a + 6 : a;
          if (inPlace) {
            for (let p = from; p < b - 4; p++) src[p] = fill;
          } else {
            out.pass(src, passFrom, from);
            this.out.push(new Uint8Array(b - 4 - from).fill(fill));
            passFrom = b - 4;
          }
          this.count++;
          i = runEnd;
          continue;
        }
      }
      if (len >= MIN_PAN_DIGITS || runExp) {
        const n = this.evaluator.evaluate(src, ws, len, false, this.keepBin, passFrom > ws ? passFrom - ws : 0, len);
        if (this.evaluator.marked) {
          if (inPlace) {
            const flags = this.evaluator.flags;
            const fill = this.fill;
            for (let p = 0; p < len; p++) if (flags[p] !== 0) src[ws + p] = fill;
          } else {
            if (passFrom < ws) out.pass(src, passFrom, ws);
            this.emit(src, ws, passFrom > ws ? passFrom : ws, runEnd);
            passFrom = runEnd;
          }
        }
        this.count += n;
      }
      i = runEnd;
    }
    if (inPlace) return;
    out.pass(src, passFrom, end);
  }

  /** Whether a digit (or a cut lead byte) starts at src[p]: a window restart point. */
  private startsRun(src: Uint8Array, p: number, end: number): boolean {
    if (p >= end) return false;
    const c = src[p];
    if (c >= 0x30 && c <= 0x39) return true;
    if (DIGIT_LEAD[c] === 0) return false;
    classify(src, p, end);
    return cKind === C.Digit || cKind === C.Incomplete;
  }

  /** Writes src[from, to) masked by the evaluator's flags (relative to base). */
  private emit(src: Uint8Array, base: number, from: number, to: number): void {
    if (to <= from) return;
    const ev = this.evaluator;
    if (!ev.marked) {
      this.out.pass(src, from, to);
      return;
    }
    const copy = Uint8Array.prototype.slice.call(src, from, to) as Uint8Array;
    const flags = ev.flags;
    const fill = this.fill;
    for (let p = from; p < to; p++) if (flags[p - base] !== 0) copy[p - from] = fill;
    this.out.push(copy);
  }

  /** Keeps src[s, end) for the next chunk; bytes before it (from passFrom) go out now. */
  private hold(src: Uint8Array, s: number, end: number, passFrom: number): void {
    if (passFrom < s) this.out.pass(src, passFrom, s);
    this.held = Uint8Array.prototype.slice.call(src, s, end) as Uint8Array;
    this.released = passFrom > s ? passFrom - s : 0;
  }
}
