// The byte-level PAN scanner shared by text and JSON masking. It walks bytes once,
// lets everything that is not a digit pass untouched (as views of the input), and
// hands each run of digit groups to the RunEvaluator. A run that reaches the end of
// a chunk is held back and finished with the next chunk, so output never depends on
// where the input was cut; the hold-back is bounded by RUN_WINDOW bytes, because a
// longer run is decided window by window (a PAN spans at most 37 bytes, and each
// window sees well over that on both sides of the bytes it releases).

import { isBranded, MAX_PAN_DIGITS, MIN_PAN_DIGITS } from './brands.js';
import type { Output } from './output.js';
import { RunEvaluator } from './pan-runs.js';

const SPACE = 0x20;
const HYPHEN = 0x2d;

/** Most bytes of one run held back at once. */
export const RUN_WINDOW = 4096;
/** Bytes at a window's end that are not released yet (beyond any PAN's reach). */
const RELEASE_MARGIN = 128;
/** A new window restarts this far back, at a group boundary, to see PANs that cross the cut. */
const CONTEXT = 256;

/** Index of the first ASCII digit in src[i, end), or end. Kept tiny so V8 inlines it. */
function nextDigit(src: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = src[i];
    if (c >= 0x30 && c <= 0x39) return i;
    i++;
  }
  return end;
}

/**
 * Per byte of x, 0x80 when the byte is an ASCII digit, else 0: the SWAR "byte
 * between m and n" test with m = 0x2f, n = 0x3a. Exact for every byte value (no
 * borrow or carry crosses bytes: bytes >= 0x80 are excluded by ~x), so the lowest
 * set bit is the first digit.
 */
function digitMask(x: number): number {
  const lo = x & 0x7f7f7f7f;
  return (0xb9b9b9b9 - lo) & ~x & (lo + 0x50505050) & 0x80808080;
}

/**
 * nextDigit four bytes at a time over `words` (a Uint32Array over src's whole
 * buffer, little-endian). The word holding i is read whole with the bytes before
 * i masked off, so there is no byte loop to reach alignment.
 */
function nextDigitWords(src: Uint8Array, words: Uint32Array, i: number, end: number): number {
  const base = src.byteOffset;
  const p = base + i;
  let w = p >> 2;
  // Words wholly before end; the partial last one is left to the byte loop.
  const wlast = (base + end) >> 2;
  if (w >= wlast) return nextDigit(src, i, end);
  let m = digitMask(words[w]) & (-1 << ((p & 3) << 3));
  while (m === 0) {
    if (++w === wlast) return nextDigit(src, (w << 2) - base, end);
    m = digitMask(words[w]);
  }
  return (w << 2) - base + ((31 - Math.clz32(m & -m)) >> 3);
}

/** Whether src[s, e), all digits, is a PAN: Luhn, then IIN range and length. */
function singlePan(src: Uint8Array, s: number, e: number): boolean {
  let sum = 0;
  let dbl = false;
  for (let p = e - 1; p >= s; p--) {
    let d = src[p] - 0x30;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  if (sum % 10 !== 0) return false;
  const prefix6 = (src[s] - 0x30) * 100000 + (src[s + 1] - 0x30) * 10000 + (src[s + 2] - 0x30) * 1000 + (src[s + 3] - 0x30) * 100 + (src[s + 4] - 0x30) * 10 + (src[s + 5] - 0x30);
  return isBranded(prefix6, e - s);
}

/** nextDigitWords reads byte positions out of words as a little-endian machine lays them out. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The run's digits, for smallRun. */
const smallDigits = new Uint8Array(MAX_PAN_DIGITS);
/** After smallRun found PANs: bit k set when the run's k-th digit is masked. */
let smallMask = 0;

/**
 * Decides a run of digit groups src[s, e) holding `digits` <= 19 digits, every
 * sub-run of whole groups with 12–19 digits a candidate, as RunEvaluator does.
 * Returns the PANs found (their digits in smallMask), or -1 when the masked view
 * still has 12 unmasked digits and needs the evaluator's further passes.
 */
function smallRun(src: Uint8Array, s: number, e: number, digits: number, keepBin: boolean): number {
  const d = smallDigits;
  // Group boundaries as digit indexes: bit k of `starts` when digit k begins a group,
  // of `ends` when digit k ends one.
  let starts = 0;
  let ends = 0;
  let k = 0;
  let prevDigit = false;
  for (let p = s; p < e; p++) {
    const c = src[p];
    if (c >= 0x30 && c <= 0x39) {
      if (!prevDigit) starts |= 1 << k;
      d[k++] = c - 0x30;
      prevDigit = true;
    } else {
      ends |= 1 << (k - 1);
      prevDigit = false;
    }
  }
  ends |= 1 << (k - 1);
  let found = 0;
  let mask = 0;
  for (let a = 0; a <= digits - MIN_PAN_DIGITS; a++) {
    if (((starts >>> a) & 1) === 0) continue;
    for (let b = a + MIN_PAN_DIGITS - 1; b < digits; b++) {
      if (((ends >>> b) & 1) === 0) continue;
      let sum = 0;
      let dbl = false;
      for (let q = b; q >= a; q--) {
        let v = d[q];
        if (dbl) {
          v *= 2;
          if (v > 9) v -= 9;
        }
        sum += v;
        dbl = !dbl;
      }
      if (sum % 10 !== 0) continue;
      const prefix6 = d[a] * 100000 + d[a + 1] * 10000 + d[a + 2] * 1000 + d[a + 3] * 100 + d[a + 4] * 10 + d[a + 5];
      if (!isBranded(prefix6, b - a + 1)) continue;
      found++;
      // Digits a .. b-4 masked, the first six kept too with bin+last4.
      for (let q = keepBin ? a + 6 : a; q <= b - 4; q++) mask |= 1 << q;
    }
  }
  if (found === 0) return 0;
  let masked = 0;
  for (let m = mask; m !== 0; m &= m - 1) masked++;
  if (digits - masked >= MIN_PAN_DIGITS) return -1;
  smallMask = mask;
  return found;
}

/** Below this many bytes the word view is not worth creating. */
const WORDS_MIN = 256;

// One evaluator for every scanner: it keeps nothing between calls (its flags are
// read right after each synchronous evaluate), so sharing it saves each masker
// (one per proxied response) its buffers.
const sharedEvaluator = new RunEvaluator(RUN_WINDOW);

const enum State {
  None,
  InGroup,
  AfterSep,
  /** Inside a group of more than 19 digits: part of no PAN, and it splits runs. */
  Long,
}

export class PanScanner {
  /** PANs found since the counter was last read (see takeCount). */
  private count = 0;
  private state = State.None;
  /** The held run; allocated on the first run that crosses a chunk end. */
  private run: Uint8Array = new Uint8Array(0);
  private runLen = 0;
  /** run[0, released) has already been written out (after a window). */
  private released = 0;
  private groupStart = 0;
  private groupLen = 0;
  private readonly evaluator = sharedEvaluator;
  /**
   * After scanInPlace: where it stopped because a run needs the held-run path
   * (over-long group or run), or -1 when it masked everything.
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

  /** True when the next bytes cannot change anything already seen: no run held, not inside a long digit group. */
  get idle(): boolean {
    return this.state === State.None;
  }

  /**
   * Masks src[start, end) as text. A run touching `end` stays open for the next
   * call, unless `final` says the byte after `end` belongs to no run (a closing
   * quote): then it is decided at once, as scan + boundary would.
   */
  scan(src: Uint8Array, start: number, end: number, final = false): void {
    this.fastScan(src, start, end, final, false);
  }

  /**
   * Masks src[start, end) in place, all of it final (nothing held). Stops at the
   * first run the fast path cannot decide alone and sets `bailAt` to its start
   * (bytes before it are done; scanning from there with `scan` finishes the job,
   * since a run starting after a non-digit is decided without what precedes it).
   */
  scanInPlace(src: Uint8Array, start: number, end: number): void {
    this.bailAt = -1;
    this.fastScan(src, start, end, true, true);
  }

  private fastScan(src: Uint8Array, start: number, end: number, final: boolean, inPlace: boolean): void {
    const out = this.out;
    let i = start;
    if (this.state !== State.None) {
      if (this.state !== State.Long) i = this.slow(src, i, end);
      if (this.state === State.Long) {
        const from = i;
        while (i < end && src[i] >= 0x30 && src[i] <= 0x39) i++;
        out.pass(src, from, i);
        if (i === end) {
          if (final) this.state = State.None;
          return;
        }
        this.state = State.None;
      }
      if (i === end) {
        if (final) this.boundary();
        return;
      }
    }
    // Output comes from `buf`: the input itself until the first PAN, then one copy
    // of the rest of the input that PANs are masked in (buf index = src index - delta).
    let buf = src;
    let delta = 0;
    let passFrom = i;
    const words = LITTLE_ENDIAN && end - i >= WORDS_MIN ? new Uint32Array(src.buffer, 0, src.buffer.byteLength >> 2) : null;
    for (;;) {
      i = words === null ? nextDigit(src, i, end) : nextDigitWords(src, words, i, end);
      if (i === end) break;
      // Most digit groups in text are short numbers standing alone: skip them
      // (and the non-digit after them) without the run machinery.
      let q = i + 1;
      while (q < end && src[q] >= 0x30 && src[q] <= 0x39) q++;
      if (q - i < MIN_PAN_DIGITS && q + 1 < end) {
        const after = src[q];
        if (after !== SPACE && after !== HYPHEN) {
          i = q + 1;
          continue;
        }
        const next = src[q + 1];
        if (next < 0x30 || next > 0x39) {
          i = q + 2;
          continue;
        }
      }
      const s = i;
      let j = i;
      let digits = 0;
      let bail = false;
      for (;;) {
        const g = j;
        while (j < end && src[j] >= 0x30 && src[j] <= 0x39) j++;
        const glen = j - g;
        if (glen > MAX_PAN_DIGITS || (j === end && !final) || j - s >= RUN_WINDOW - 2) {
          bail = true;
          break;
        }
        digits += glen;
        if (j === end) break;
        const sep = src[j];
        if (sep === SPACE || sep === HYPHEN) {
          if (j + 1 === end) {
            if (final) break;
            bail = true;
            break;
          }
          const d = src[j + 1];
          if (d >= 0x30 && d <= 0x39) {
            j++;
            continue;
          }
        }
        break;
      }
      if (bail) {
        if (inPlace) {
          this.bailAt = s;
          return;
        }
        // Rare: a run cut by the chunk end, very long, or with an over-long group.
        // The byte-at-a-time path is the reference; hand it the run from its start.
        out.pass(buf, passFrom - delta, s - delta);
        i = this.slow(src, s, end);
        if ((this.state as State) === State.Long) {
          const from = i;
          while (i < end && src[i] >= 0x30 && src[i] <= 0x39) i++;
          out.pass(src, from, i);
          if (i === end) {
            if (final) this.state = State.None;
            return;
          }
          this.state = State.None;
        }
        passFrom = i;
        continue;
      }
      if (digits >= MIN_PAN_DIGITS) {
        // A run that is one group has one candidate, and what its masking leaves
        // (at most ten digits) cannot form another: decide it without the evaluator.
        const single = j - s === digits;
        // A grouped run of at most 19 digits (a written-out card number) is decided
        // here unless what its PANs leave unmasked could form another candidate.
        const small = !single && digits <= MAX_PAN_DIGITS ? smallRun(src, s, j, digits, this.keepBin) : -1;
        const n = single ? (singlePan(src, s, j) ? 1 : 0) : small >= 0 ? small : this.evaluator.evaluate(src, s, j - s, false, this.keepBin);
        if (n > 0) {
          if (buf === src && !inPlace) {
            out.pass(src, passFrom, s);
            // Uint8Array's slice copies (Buffer's would alias the caller's bytes).
            buf = Uint8Array.prototype.slice.call(src, s, end) as Uint8Array;
            delta = s;
            passFrom = s;
          }
          const fill = this.fill;
          const at = s - delta;
          if (single) {
            const keepFrom = j - 4 - delta;
            for (let p = this.keepBin ? at + 6 : at; p < keepFrom; p++) buf[p] = fill;
          } else if (small >= 0) {
            // smallMask bit k: the run's k-th digit is masked.
            let k = 0;
            for (let p = s; p < j; p++) {
              const c = src[p];
              if (c >= 0x30 && c <= 0x39) {
                if (((smallMask >>> k) & 1) !== 0) buf[p - delta] = fill;
                k++;
              }
            }
          } else {
            const flags = this.evaluator.flags;
            const len = j - s;
            for (let p = 0; p < len; p++) if (flags[p] !== 0) buf[at + p] = fill;
          }
          this.count += n;
        }
      }
      i = j;
    }
    if (inPlace) return;
    out.pass(buf, passFrom - delta, end - delta);
    if (final) this.boundary();
  }

  /** The input is discontinued by a byte that belongs to no run (end of a JSON string, end of stream). */
  boundary(): void {
    if (this.state === State.InGroup) this.finishRun(this.runLen);
    else if (this.state === State.AfterSep) this.finishRun(this.runLen - 1);
    this.state = State.None;
  }

  /** Forgets held bytes without writing them (fail closed after an error). */
  discard(): void {
    this.state = State.None;
    this.runLen = 0;
    this.released = 0;
  }

  /** Byte-at-a-time run handling; returns the index of the first byte after the run (or end). */
  private slow(src: Uint8Array, i: number, end: number): number {
    while (i < end) {
      const c = src[i];
      const digit = c >= 0x30 && c <= 0x39;
      switch (this.state) {
        case State.None:
          // Only entered at a digit.
          if (this.run.length === 0) this.run = new Uint8Array(RUN_WINDOW);
          this.runLen = 0;
          this.released = 0;
          this.groupStart = 0;
          this.groupLen = 1;
          this.state = State.InGroup;
          this.append(c);
          i++;
          break;
        case State.InGroup:
          if (digit) {
            this.groupLen++;
            if (this.groupLen > MAX_PAN_DIGITS) {
              // The run ends before this group (and its separator); the group passes.
              this.finishRun(this.groupStart > 0 ? this.groupStart - 1 : 0);
              this.out.pass(src, i, i + 1);
              this.state = State.Long;
              return i + 1;
            }
            this.append(c);
            i++;
          } else if (c === SPACE || c === HYPHEN) {
            this.append(c);
            this.state = State.AfterSep;
            i++;
          } else {
            this.finishRun(this.runLen);
            this.state = State.None;
            return i;
          }
          break;
        case State.AfterSep:
          if (digit) {
            this.append(c);
            this.groupStart = this.runLen - 1;
            this.groupLen = 1;
            this.state = State.InGroup;
            i++;
          } else {
            this.finishRun(this.runLen - 1);
            this.state = State.None;
            return i;
          }
          break;
        case State.Long:
          return i;
      }
    }
    return end;
  }

  private append(c: number): void {
    this.run[this.runLen++] = c;
    if (this.runLen === RUN_WINDOW) this.window();
  }

  /** Decides run[0, runEnd) (bytes after it are a trailing separator or a long group) and writes out everything held. */
  private finishRun(runEnd: number): void {
    if (runEnd >= MIN_PAN_DIGITS) {
      this.count += this.evaluator.evaluate(this.run, 0, runEnd, false, this.keepBin, this.released, runEnd);
      this.out.push(this.maskedHeld(this.released, this.runLen, runEnd));
    } else if (this.runLen > this.released) {
      this.out.push(this.run.slice(this.released, this.runLen));
    }
    this.runLen = 0;
    this.released = 0;
  }

  private maskedHeld(from: number, to: number, flagged: number): Uint8Array {
    const copy = this.run.slice(from, to);
    if (!this.evaluator.marked) return copy;
    const flags = this.evaluator.flags;
    const lim = Math.min(to, flagged);
    for (let p = from; p < lim; p++) if (flags[p] !== 0) copy[p - from] = this.fill;
    return copy;
  }

  /** The held run filled the window: release all but its last RELEASE_MARGIN bytes and keep context. */
  private window(): void {
    const run = this.run;
    const len = this.runLen;
    const last = run[len - 1];
    const openEnd = last >= 0x30 && last <= 0x39;
    const releaseTo = len - RELEASE_MARGIN;
    this.count += this.evaluator.evaluate(run, 0, len, openEnd, this.keepBin, this.released, releaseTo);
    this.out.push(this.maskedHeld(this.released, releaseTo, len));
    // Restart at the first group that begins at or after len - CONTEXT.
    let cs = len - CONTEXT;
    while (!(run[cs] >= 0x30 && run[cs] <= 0x39 && !(run[cs - 1] >= 0x30 && run[cs - 1] <= 0x39))) cs++;
    run.copyWithin(0, cs, len);
    this.runLen = len - cs;
    this.released = releaseTo - cs;
    this.groupStart -= cs;
  }
}
