// Structure-aware JSON masking over a byte stream of JSON values (one document,
// NDJSON, Kubernetes watch events, concatenated values). A strict tokenizer walks
// the bytes once; output is always valid JSON for valid input:
// - strings (values and keys): PANs masked in place by the text scanner, same length.
//   Escapes that spell a digit, space or hyphen (`\u0034`) are decoded first and
//   written out literally, so an escaped PAN is masked too; other escapes pass as
//   they are and end a digit run, like any non-digit character.
// - a bare number that holds a PAN becomes a string with the masked value
//   (`4111111111111111` → `"************1111"`): a JSON number cannot carry `*`.
// - the value of a card-data key (cvv, pin, track2, …) is starred whole: a string
//   becomes `*` per character, a number becomes a string of `*` as long as its text,
//   in an array or object every string and number inside is starred; true, false
//   and null stay (they carry no card data).
// Invalid JSON fails closed: write()/end() throw a JsonMaskError naming the line and
// byte, nothing after the last released chunk is written (bytes held for the chunk
// that failed are dropped), and every later write throws the same error.
// Memory is bounded: strings stream through (the PAN scanner holds at most one run
// window), numbers are capped at MAX_NUMBER_BYTES and nesting at MAX_DEPTH.

import { countCardFields, countPans } from './metrics.js';
import { resolveOptions } from './options.js';
import type { MaskOptions, ResolvedOptions } from './options.js';
import { Output } from './output.js';
import { PanScanner } from './scanner.js';
import type { StreamMasker } from './text.js';
import { DIGIT_LEAD, isRunCodePoint, unicodeDigit } from './chars.js';

const unicodeDigitOrAscii = (c: number) => unicodeDigit(c) >= 0;

export const MAX_NUMBER_BYTES = 4096;
export const MAX_DEPTH = 10000;

export class JsonMaskError extends Error {
  override name = 'JsonMaskError';
  constructor(
    message: string,
    /** 0-based byte offset in the stream where the input stopped being valid JSON. */
    readonly offset: number,
    /** 1-based line of that byte. */
    readonly line: number,
  ) {
    super(`invalid JSON at line ${line}, byte ${offset}: ${message}`);
  }
}

const enum S {
  Top,
  Value,
  ArrValueOrEnd,
  ObjKeyOrEnd,
  ObjKey,
  Colon,
  ObjAfterValue,
  ArrAfterValue,
  Str,
  Esc,
  Num,
  Lit,
}

const OBJ = 1;
const ARR = 2;
// Output may be handed to the caller as a view of what was pushed, so constants are
// never pushed themselves: a caller writing into its output must not be able to
// change what later output (or the decoding of escapes) is made of.
const LITERALS: Record<number, Uint8Array> = {
  0x74: Buffer.from('true'),
  0x66: Buffer.from('false'),
  0x6e: Buffer.from('null'),
};
/** JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
function validNumber(b: Uint8Array, s: number, e: number): boolean {
  let i = s;
  if (b[i] === 0x2d) i++;
  if (i >= e) return false;
  if (b[i] === 0x30) i++;
  else if (b[i] >= 0x31 && b[i] <= 0x39) {
    i++;
    while (i < e && b[i] >= 0x30 && b[i] <= 0x39) i++;
  } else return false;
  if (i < e && b[i] === 0x2e) {
    const f = ++i;
    while (i < e && b[i] >= 0x30 && b[i] <= 0x39) i++;
    if (i === f) return false;
  }
  if (i < e && (b[i] | 0x20) === 0x65) {
    i++;
    if (i < e && (b[i] === 0x2b || b[i] === 0x2d)) i++;
    const f = i;
    while (i < e && b[i] >= 0x30 && b[i] <= 0x39) i++;
    if (i === f) return false;
  }
  return i === e;
}
/** Bytes that can appear in a JSON number. */
const NUMCHAR = new Uint8Array(256);
for (const c of '0123456789+-.eE') NUMCHAR[c.charCodeAt(0)] = 1;
/**
 * String bytes: 1 ends the plain stretch (quote, backslash, control character), 2 is a
 * digit or a byte that may begin a Unicode digit (counted as one), 0 anything else.
 */
const STRSTOP = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) STRSTOP[c] = 1;
STRSTOP[0x22] = 1;
STRSTOP[0x5c] = 1;
for (let c = 0x30; c <= 0x39; c++) STRSTOP[c] = 2;
for (let c = 0x80; c < 0x100; c++) if (DIGIT_LEAD[c] !== 0) STRSTOP[c] = 2;

/** Bytes that may follow a backslash as a whole two-byte escape (everything but `u`). */
const SIMPLE_ESCAPE = new Int16Array(256).fill(-1);
for (const [e, ch] of [[0x22, 0x22], [0x5c, 0x5c], [0x2f, 0x2f], [0x62, 0x08], [0x66, 0x0c], [0x6e, 0x0a], [0x72, 0x0d], [0x74, 0x09]]) SIMPLE_ESCAPE[e] = ch;
/** Hex digit values, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 16; c++) {
  HEX['0123456789abcdef'.charCodeAt(c)] = c;
  HEX['0123456789ABCDEF'.charCodeAt(c)] = c;
}

/** ASCII bytes that may sit inside a digit run (separators, comma, exponent); non-ASCII is assumed to. */
const RUN_LINK = new Uint8Array(256);
for (const c of ' \t-./_,eE+') RUN_LINK[c.charCodeAt(0)] = 1;
for (let c = 0x80; c < 0x100; c++) RUN_LINK[c] = 1;

/**
 * Whether src[s, e) has 12 digits with nothing but bytes that can link digit groups
 * between them: without that no PAN can be in it. Cheaper than the scanner for
 * strings with many scattered digits (timestamps, UIDs).
 */
function mayHoldPan(src: Uint8Array, s: number, e: number): boolean {
  let d = 0;
  for (let p = s; p < e; p++) {
    const c = src[p];
    if (STRSTOP[c] === 2) {
      if (++d >= 12) return true;
    } else if (RUN_LINK[c] === 0) d = 0;
  }
  return false;
}

/** UTF-8 of a code unit an escape stands for, when it can be part of a digit run. */
function runBytes(code: number): Uint8Array | undefined {
  if (code === 0x09 || !isRunCodePoint(code) || (code >= 0xd800 && code <= 0xdfff)) return undefined;
  return Buffer.from(String.fromCharCode(code), 'utf8');
}

/** Card field names as bytes by length, and the bytes they start with, per resolved option set (shared, read-only). */
interface CardTable {
  byLength: Uint8Array[][];
  first: Uint8Array;
}
const cardTables = new WeakMap<ResolvedOptions, CardTable>();
function cardTable(r: ResolvedOptions): CardTable {
  let t = cardTables.get(r);
  if (t === undefined) {
    t = { byLength: [], first: new Uint8Array(256) };
    for (const f of r.cardFields) {
      (t.byLength[f.length] ??= []).push(Buffer.from(f, 'latin1'));
      t.first[f.charCodeAt(0) & 0xff] = 1;
    }
    cardTables.set(r, t);
  }
  return t;
}
const NO_BYTES = new Uint8Array(0);

function describe(c: number): string {
  if (c >= 0x21 && c <= 0x7e) return `'${String.fromCharCode(c)}'`;
  return `byte 0x${c.toString(16).padStart(2, '0')}`;
}

export class JsonMasker implements StreamMasker {
  private readonly out = new Output();
  private readonly scanner: PanScanner;
  /**
   * Separate scanner for number tokens, so a number never mixes with string runs;
   * created on the first number long enough to be a PAN (most responses have none).
   */
  private numOut: Output | null = null;
  private numScanner: PanScanner | null = null;
  private readonly opts: ResolvedOptions;
  /** Normalized card field names as bytes, by length (shared between maskers). */
  private readonly cardByLength: Uint8Array[][];
  /** 1 for each byte a normalized card field name starts with. */
  private readonly cardFirst: Uint8Array;

  private state = S.Top;
  private stack = new Uint8Array(64);
  private depth = 0;
  /** Depth at which the value of a card-data key started, or -1. */
  private taintDepth = -1;
  /** The key just read names card data: the next value is starred. */
  private cardNext = false;

  // Current string.
  private isKey = false;
  private starred = false;
  /** The key so far, normalized (lower-case, no `_`/`-`), while it could still name a card field. */
  private keyBuf: Uint8Array;
  private keyLen = 0;
  private keyOverflow = false;
  private esc = new Uint8Array(6);
  private escLen = 0;

  // Current number (only when cut by a chunk end) and literal.
  private num: Uint8Array = NO_BYTES;
  private numLen = 0;
  /** Stream offset where the current number started. */
  private numAt = 0;
  private lit: Uint8Array = LITERALS[0x74];
  private litIdx = 0;

  private offset = 0;
  private line = 1;
  private failed: JsonMaskError | null = null;
  private ended = false;
  private pans = 0;
  private fields = 0;
  private total = 0;

  constructor(opts: MaskOptions = {}) {
    this.opts = resolveOptions(opts);
    this.keyBuf = new Uint8Array(this.opts.cardFieldMaxLen + 1);
    const t = cardTable(this.opts);
    this.cardByLength = t.byLength;
    this.cardFirst = t.first;
    this.scanner = new PanScanner(this.out, this.opts.keepBin, this.opts.fill);
  }

  /**
   * Makes the masker as new (same options) for another stream, dropping anything
   * held and a past failure: for callers that keep one masker per connection.
   */
  reset(): void {
    this.scanner.discard();
    this.scanner.takeCount();
    this.out.discard();
    if (this.numScanner !== null) {
      this.numScanner.discard();
      this.numScanner.takeCount();
      this.numOut!.discard();
    }
    this.state = S.Top;
    this.depth = 0;
    this.taintDepth = -1;
    this.cardNext = false;
    this.isKey = false;
    this.starred = false;
    this.keyLen = 0;
    this.keyOverflow = false;
    this.escLen = 0;
    this.numLen = 0;
    this.numAt = 0;
    this.litIdx = 0;
    this.offset = 0;
    this.line = 1;
    this.failed = null;
    this.ended = false;
    this.pans = 0;
    this.fields = 0;
    this.total = 0;
  }

  get pansMasked(): number {
    return this.total;
  }

  write(chunk: Uint8Array): Buffer {
    if (this.failed) throw this.failed;
    if (this.ended) throw new Error('mask: write after end');
    try {
      this.run(chunk);
    } catch (err) {
      this.failClosed(err);
    }
    this.offset += chunk.length;
    this.tally();
    return this.out.take();
  }

  end(): Buffer {
    if (this.failed) throw this.failed;
    if (this.ended) return Buffer.alloc(0);
    this.ended = true;
    try {
      if (this.state === S.Num) this.finishNumber(this.num, 0, this.numLen);
      if (this.state !== S.Top) {
        const where = this.state === S.Str || this.state === S.Esc ? 'inside a string' : this.state === S.Lit ? 'inside a literal' : this.depth > 0 ? `inside ${this.depth} unclosed ${this.depth === 1 ? 'container' : 'containers'}` : 'before a value';
        this.fail(`unexpected end of input ${where}`, 0);
      }
    } catch (err) {
      this.failClosed(err);
    }
    this.tally();
    return this.out.take();
  }

  private failClosed(err: unknown): never {
    this.scanner.discard();
    this.numScanner?.discard();
    this.out.discard();
    this.numOut?.discard();
    if (err instanceof JsonMaskError) this.failed = err;
    throw err;
  }

  private tally(): void {
    const n = this.pans + this.scanner.takeCount();
    this.pans = 0;
    if (n > 0) {
      this.total += n;
      countPans('json', n);
    }
    if (this.fields > 0) {
      countCardFields('json', this.fields);
      this.fields = 0;
    }
  }

  private fail(msg: string, i: number): never {
    throw new JsonMaskError(msg, this.offset + i, this.line);
  }

  private failAt(msg: string, offset: number): never {
    throw new JsonMaskError(msg, offset, this.line);
  }

  private run(src: Uint8Array): void {
    const n = src.length;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case S.Str:
          i = this.string(src, i, n);
          break;
        case S.Esc:
          i = this.escape(src, i, n);
          break;
        case S.Num:
          i = this.numberCont(src, i, n);
          break;
        case S.Lit:
          i = this.literal(src, i, n);
          break;
        default:
          i = this.structural(src, i, n);
      }
    }
  }

  private structural(src: Uint8Array, i: number, n: number): number {
    const c = src[i];
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      let j = i;
      for (; j < n; j++) {
        const w = src[j];
        if (w === 0x0a) this.line++;
        else if (w !== 0x20 && w !== 0x0d && w !== 0x09) break;
      }
      this.out.pass(src, i, j);
      return j;
    }
    switch (this.state) {
      case S.ArrValueOrEnd:
        if (c === 0x5d) return this.close(src, i);
        return this.startValue(src, i, n);
      case S.Top:
      case S.Value:
        return this.startValue(src, i, n);
      case S.ObjKeyOrEnd:
      case S.ObjKey:
        if (c === 0x7d && this.state === S.ObjKeyOrEnd) return this.close(src, i);
        if (c !== 0x22) this.fail(`expected a string key, found ${describe(c)}`, i);
        this.out.pass(src, i, i + 1);
        this.beginString(true);
        return i + 1 < n ? this.string(src, i + 1, n) : i + 1;
      case S.Colon:
        if (c !== 0x3a) this.fail(`expected ':' after a key, found ${describe(c)}`, i);
        this.out.pass(src, i, i + 1);
        this.state = S.Value;
        return i + 1;
      case S.ObjAfterValue:
        if (c === 0x2c) {
          this.out.pass(src, i, i + 1);
          this.state = S.ObjKey;
          return i + 1;
        }
        if (c === 0x7d) return this.close(src, i);
        return this.fail(`expected ',' or '}' in an object, found ${describe(c)}`, i);
      case S.ArrAfterValue:
        if (c === 0x2c) {
          this.out.pass(src, i, i + 1);
          this.state = S.Value;
          return i + 1;
        }
        if (c === 0x5d) return this.close(src, i);
        return this.fail(`expected ',' or ']' in an array, found ${describe(c)}`, i);
      default:
        return this.fail('internal state error', i);
    }
  }

  /** A closer; the state machine only accepts the one matching the open container. */
  private close(src: Uint8Array, i: number): number {
    this.out.pass(src, i, i + 1);
    this.depth--;
    this.valueDone();
    return i + 1;
  }

  private valueDone(): void {
    if (this.depth === this.taintDepth) this.taintDepth = -1;
    if (this.depth === 0) this.state = S.Top;
    else this.state = this.stack[this.depth - 1] === OBJ ? S.ObjAfterValue : S.ArrAfterValue;
  }

  private push(kind: number, i: number): void {
    if (this.depth >= MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`, i);
    if (this.depth === this.stack.length) {
      const s = new Uint8Array(this.stack.length * 2);
      s.set(this.stack);
      this.stack = s;
    }
    this.stack[this.depth++] = kind;
  }

  private startValue(src: Uint8Array, i: number, n: number): number {
    if (this.cardNext) {
      this.cardNext = false;
      if (this.taintDepth < 0) {
        this.taintDepth = this.depth;
        this.fields++;
      }
    }
    const c = src[i];
    switch (c) {
      case 0x7b:
        this.push(OBJ, i);
        this.out.pass(src, i, i + 1);
        this.state = S.ObjKeyOrEnd;
        return i + 1;
      case 0x5b:
        this.push(ARR, i);
        this.out.pass(src, i, i + 1);
        this.state = S.ArrValueOrEnd;
        return i + 1;
      case 0x22:
        this.out.pass(src, i, i + 1);
        this.beginString(false);
        return i + 1 < n ? this.string(src, i + 1, n) : i + 1;
      case 0x74:
      case 0x66:
      case 0x6e:
        this.lit = LITERALS[c];
        this.litIdx = 0;
        this.state = S.Lit;
        return this.literal(src, i, n);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.numberStart(src, i, n);
        return this.fail(`expected a value, found ${describe(c)}`, i);
    }
  }

  private beginString(isKey: boolean): void {
    this.state = S.Str;
    this.isKey = isKey;
    this.starred = !isKey && this.taintDepth >= 0;
    if (isKey) {
      this.keyLen = 0;
      this.keyOverflow = false;
    }
  }

  private string(src: Uint8Array, i: number, n: number): number {
    let j = i;
    if (this.starred) {
      let chars = 0;
      for (; j < n; j++) {
        const c = src[j];
        if (STRSTOP[c] === 1) break;
        if ((c & 0xc0) !== 0x80) chars++;
      }
      this.stars(chars);
    } else {
      const out = this.out;
      const scanner = this.scanner;
      for (;;) {
        // A plain stretch: up to a quote, backslash or control byte (digits counted twice).
        const from = j;
        let digits = 0;
        for (; j < n; j++) {
          const k = STRSTOP[src[j]];
          if (k === 1) break;
          digits += k;
        }
        if (this.isKey) this.keyChars(src, from, j);
        // What ends the stretch, when it is whole in this chunk: the closing quote, or
        // an escape that stands for a byte no digit run contains (decoded here, so the
        // output stays one view of the chunk). Anything else takes the general path.
        let closed = false;
        let escEnd = 0;
        let ch = 0;
        if (j < n) {
          const c = src[j];
          if (c === 0x22) closed = true;
          else if (c === 0x5c && j + 1 < n) {
            const e = src[j + 1];
            const simple = SIMPLE_ESCAPE[e];
            if (simple >= 0) {
              closed = true;
              ch = simple;
              escEnd = j + 2;
            } else if (e === 0x75 && j + 5 < n) {
              const h0 = HEX[src[j + 2]];
              const h1 = HEX[src[j + 3]];
              const h2 = HEX[src[j + 4]];
              const h3 = HEX[src[j + 5]];
              if ((h0 | h1 | h2 | h3) >= 0) {
                const code = (h0 << 12) | (h1 << 8) | (h2 << 4) | h3;
                if (code === 0x09 || !isRunCodePoint(code) || (code >= 0xd800 && code <= 0xdfff)) {
                  closed = true;
                  ch = code;
                  escEnd = j + 6;
                }
              }
            }
          }
        }
        // With nothing held and the stretch closed, fewer than 12 digits cannot hold a PAN.
        if (scanner.idle && (digits === 0 || (closed && (digits < 24 || !mayHoldPan(src, from, j))))) out.pass(src, from, j);
        else scanner.scan(src, from, j, closed);
        if (!closed) break;
        if (escEnd === 0) {
          scanner.boundary();
          this.stringDone();
          // A key's colon almost always follows at once: take it here.
          if (this.state === S.Colon && j + 1 < n && src[j + 1] === 0x3a) {
            out.pass(src, j, j + 2);
            this.state = S.Value;
            return j + 2;
          }
          out.pass(src, j, j + 1);
          return j + 1;
        }
        if (this.isKey && !this.keyOverflow && ch !== 0x5f && ch !== 0x2d) {
          if (ch > 0x7f || this.keyLen === this.keyBuf.length) this.keyOverflow = true;
          else this.keyBuf[this.keyLen++] = ch >= 0x41 && ch <= 0x5a ? ch + 0x20 : ch;
        }
        out.pass(src, j, escEnd);
        j = escEnd;
      }
    }
    if (j === n) return n;
    const c = src[j];
    if (c === 0x22) {
      this.scanner.boundary();
      this.out.pass(src, j, j + 1);
      this.stringDone();
      return j + 1;
    }
    if (c === 0x5c) {
      this.state = S.Esc;
      this.esc[0] = c;
      this.escLen = 1;
      return j + 1;
    }
    return this.fail(`unescaped control character ${describe(c)} in a string`, j);
  }

  private stringDone(): void {
    if (this.isKey) {
      this.cardNext = !this.keyOverflow && this.isCardKey();
      this.state = S.Colon;
    } else {
      this.valueDone();
    }
  }

  private isCardKey(): boolean {
    const names = this.cardByLength[this.keyLen];
    if (names === undefined) return false;
    const k = this.keyBuf;
    for (const name of names) {
      let p = 0;
      while (p < name.length && name[p] === k[p]) p++;
      if (p === name.length) return true;
    }
    return false;
  }

  private keyChars(src: Uint8Array, i: number, j: number): void {
    if (this.keyOverflow) return;
    const buf = this.keyBuf;
    let len = this.keyLen;
    for (let p = i; p < j; p++) {
      let c = src[p];
      if (c === 0x5f || c === 0x2d) continue;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      // Most keys are ruled out by their first letter: stop copying them.
      if (len === buf.length || (len === 0 && this.cardFirst[c] === 0)) {
        this.keyOverflow = true;
        return;
      }
      buf[len++] = c;
    }
    this.keyLen = len;
  }

  private stars(count: number): void {
    while (count > 0) {
      const k = Math.min(count, 65536);
      this.out.push(Buffer.alloc(k, 0x2a));
      count -= k;
    }
  }

  private escape(src: Uint8Array, i: number, n: number): number {
    while (i < n) {
      const c = src[i];
      if (this.escLen === 1) {
        this.esc[1] = c;
        this.escLen = 2;
        i++;
        if (c === 0x75) continue;
        let ch: number;
        switch (c) {
          case 0x22: ch = 0x22; break;
          case 0x5c: ch = 0x5c; break;
          case 0x2f: ch = 0x2f; break;
          case 0x62: ch = 0x08; break;
          case 0x66: ch = 0x0c; break;
          case 0x6e: ch = 0x0a; break;
          case 0x72: ch = 0x0d; break;
          case 0x74: ch = 0x09; break;
          default:
            return this.fail(`invalid escape '\\${String.fromCharCode(c)}' in a string`, i - 1);
        }
        this.escaped(ch);
        return i;
      }
      const h = c | 0x20;
      if (!((c >= 0x30 && c <= 0x39) || (h >= 0x61 && h <= 0x66))) this.fail(`invalid \\u escape: ${describe(c)} is not a hex digit`, i);
      this.esc[this.escLen++] = c;
      i++;
      if (this.escLen === 6) {
        const code = parseInt(String.fromCharCode(this.esc[2], this.esc[3], this.esc[4], this.esc[5]), 16);
        this.escaped(code);
        return i;
      }
    }
    return i;
  }

  /** One escape sequence (held in `esc`) stood for UTF-16 code unit `ch`. */
  private escaped(ch: number): void {
    this.state = S.Str;
    if (this.starred) {
      this.stars(1);
      return;
    }
    if (this.isKey && !this.keyOverflow && ch !== 0x5f && ch !== 0x2d) {
      // Card field names are ASCII: any other escaped character rules the key out.
      if (ch > 0x7f || this.keyLen === this.keyBuf.length) this.keyOverflow = true;
      else this.keyBuf[this.keyLen++] = ch >= 0x41 && ch <= 0x5a ? ch + 0x20 : ch;
    }
    // Written out decoded (valid inside a JSON string), so an escaped PAN is caught;
    // a tab stays escaped (a raw one is not allowed) and so ends the run.
    // A separator only matters after a digit: elsewhere the escape stays as written.
    const bytes = runBytes(ch);
    if (bytes !== undefined && (!this.scanner.idle || unicodeDigitOrAscii(ch))) {
      this.scanner.scan(bytes, 0, bytes.length);
    } else {
      this.scanner.boundary();
      this.out.push(this.esc.slice(0, this.escLen));
    }
  }

  private literal(src: Uint8Array, i: number, n: number): number {
    const lit = this.lit;
    const from = i;
    while (i < n && this.litIdx < lit.length) {
      if (src[i] !== lit[this.litIdx]) {
        this.out.pass(src, from, i);
        return this.fail(`invalid literal: expected '${Buffer.from(lit).toString()}'`, i);
      }
      i++;
      this.litIdx++;
    }
    this.out.pass(src, from, i);
    if (this.litIdx === lit.length) this.valueDone();
    return i;
  }

  private numberStart(src: Uint8Array, i: number, n: number): number {
    this.numAt = this.offset + i;
    let j = i;
    while (j < n && NUMCHAR[src[j]] === 1) j++;
    if (j - i > MAX_NUMBER_BYTES) this.failAt(`number longer than ${MAX_NUMBER_BYTES} bytes`, this.numAt);
    if (j < n) {
      this.finishNumber(src, i, j);
      return j;
    }
    this.numLen = 0;
    this.appendNumber(src, i, j);
    this.state = S.Num;
    return j;
  }

  private numberCont(src: Uint8Array, i: number, n: number): number {
    let j = i;
    while (j < n && NUMCHAR[src[j]] === 1) j++;
    this.appendNumber(src, i, j);
    if (j < n) this.finishNumber(this.num, 0, this.numLen);
    return j;
  }

  private appendNumber(src: Uint8Array, i: number, j: number): void {
    const len = this.numLen + (j - i);
    if (len > MAX_NUMBER_BYTES) this.failAt(`number longer than ${MAX_NUMBER_BYTES} bytes`, this.numAt);
    if (len > this.num.length) {
      const b = new Uint8Array(Math.min(MAX_NUMBER_BYTES, Math.max(len, 64, this.num.length * 2)));
      b.set(this.num.subarray(0, this.numLen));
      this.num = b;
    }
    this.num.set(src.subarray(i, j), this.numLen);
    this.numLen = len;
  }

  /** A complete number token src[s, e). */
  private finishNumber(src: Uint8Array, s: number, e: number): void {
    if (!validNumber(src, s, e)) {
      const text = Buffer.from(src.buffer, src.byteOffset + s, e - s).toString('latin1');
      this.failAt(`invalid number '${text.length > 40 ? `${text.slice(0, 40)}…` : text}'`, this.numAt);
    }
    if (this.taintDepth >= 0) {
      this.out.pushByte(0x22);
      this.stars(e - s);
      this.out.pushByte(0x22);
    } else {
      let masked: Buffer | null = null;
      if (e - s >= 12) {
        if (this.numScanner === null) {
          this.numOut = new Output();
          this.numScanner = new PanScanner(this.numOut, this.opts.keepBin, this.opts.fill);
        }
        this.numScanner.scan(src, s, e);
        this.numScanner.boundary();
        const found = this.numScanner.takeCount();
        const bytes = this.numOut!.take();
        if (found > 0) {
          this.pans += found;
          masked = bytes;
        }
      }
      if (masked) {
        this.out.pushByte(0x22);
        this.out.push(masked);
        this.out.pushByte(0x22);
      } else if (src === this.num) {
        this.out.push(this.num.slice(0, e));
      } else {
        this.out.pass(src, s, e);
      }
    }
    this.numLen = 0;
    this.valueDone();
  }
}

export function createJsonMasker(opts?: MaskOptions): JsonMasker {
  return new JsonMasker(opts);
}

/** Masks a complete buffer or string of JSON values; throws JsonMaskError on invalid JSON. */
export function maskJson(input: string, opts?: MaskOptions): string;
export function maskJson(input: Uint8Array, opts?: MaskOptions): Buffer;
export function maskJson(input: string | Uint8Array, opts?: MaskOptions): string | Buffer {
  const m = new JsonMasker(opts);
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const a = m.write(buf);
  const b = m.end();
  const out = b.length === 0 ? a : Buffer.concat([a, b]);
  return typeof input === 'string' ? out.toString('utf8') : out;
}
