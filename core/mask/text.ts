// Text masking: streaming (TextMasker) and one-shot (maskText, maskInPlace).
// Length-preserving: every masked digit is replaced by one fill byte, so byte
// offsets, PostgreSQL value lengths and JSON string framing stay as they were.

import { countPans } from './metrics.js';
import { resolveOptions } from './options.js';
import type { MaskOptions, ResolvedOptions } from './options.js';
import { Output } from './output.js';
import { PanScanner } from './scanner.js';
import { unicodeDigit } from './chars.js';

/** A streaming masker: feed chunks, get masked bytes; identical output however the input is cut. */
export interface StreamMasker {
  /**
   * Masks a chunk; returns what can be released now (a run cut by the chunk end is
   * held back). Unchanged stretches are returned as views of the chunk, not copies:
   * do not reuse the chunk's memory until the result has been written out.
   */
  write(chunk: Uint8Array): Buffer;
  /** Releases everything still held; the masker cannot be written after this. */
  end(): Buffer;
  /** PANs masked so far. */
  readonly pansMasked: number;
}

export class TextMasker implements StreamMasker {
  private readonly out = new Output();
  private readonly scanner: PanScanner;
  private total = 0;
  private ended = false;

  constructor(opts: MaskOptions = {}) {
    const r = resolveOptions(opts);
    this.scanner = new PanScanner(this.out, r.keepBin, r.fill);
  }

  get pansMasked(): number {
    return this.total;
  }

  write(chunk: Uint8Array): Buffer {
    if (this.ended) throw new Error('mask: write after end');
    this.scanner.scan(chunk, 0, chunk.length);
    this.tally();
    return this.out.take();
  }

  /**
   * Makes the masker as new (same options) for another stream, dropping anything
   * held: for callers that keep one masker per connection instead of one per body.
   */
  reset(): void {
    this.scanner.discard();
    this.scanner.takeCount();
    this.out.discard();
    this.total = 0;
    this.ended = false;
  }

  end(): Buffer {
    if (this.ended) return Buffer.alloc(0);
    this.ended = true;
    this.scanner.boundary();
    this.tally();
    return this.out.take();
  }

  private tally(): void {
    const n = this.scanner.takeCount();
    if (n > 0) {
      this.total += n;
      countPans('text', n);
    }
  }
}

export function createTextMasker(opts?: MaskOptions): TextMasker {
  return new TextMasker(opts);
}

// One scanner per option set for the one-shot calls: they are synchronous, so a
// shared instance is never used by two callers at once, and small values (audit
// strings, DataRow fields) do not pay for allocating scanner buffers.
const shared: ({ out: Output; scanner: PanScanner } | undefined)[] = [];
function sharedScanner(r: Pick<ResolvedOptions, 'keepBin' | 'fill'>) {
  const key = (r.keepBin ? 2 : 0) + (r.fill === 0x30 ? 1 : 0);
  let s = shared[key];
  if (!s) {
    const out = new Output();
    s = { out, scanner: new PanScanner(out, r.keepBin, r.fill) };
    shared[key] = s;
  }
  return s;
}

const LIGHT: Pick<ResolvedOptions, 'keepBin' | 'fill'>[] = [
  { keepBin: false, fill: 0x2a },
  { keepBin: false, fill: 0x30 },
  { keepBin: true, fill: 0x2a },
  { keepBin: true, fill: 0x30 },
];
/** keep and fill only (text masking ignores cardFields), validated, without allocating. */
function resolveLight(opts?: MaskOptions): Pick<ResolvedOptions, 'keepBin' | 'fill'> {
  if (!opts) return LIGHT[0];
  const keep = opts.keep ?? 'last4';
  const fill = opts.fill ?? '*';
  if ((keep !== 'last4' && keep !== 'bin+last4') || (fill !== '*' && fill !== '0')) return resolveOptions({ keep, fill });
  return LIGHT[(keep === 'bin+last4' ? 2 : 0) + (fill === '0' ? 1 : 0)];
}

/** Masks bytes src[start, end); returns the masked copy and the number of PANs, or null when there are none. */
function maskBytes(src: Uint8Array, start: number, end: number, r: Pick<ResolvedOptions, 'keepBin' | 'fill'>): { bytes: Buffer; pans: number } | null {
  const { out, scanner } = sharedScanner(r);
  try {
    scanner.scan(src, start, end, true);
    scanner.boundary();
  } catch (err) {
    scanner.discard();
    out.discard();
    scanner.takeCount();
    throw err;
  }
  const pans = scanner.takeCount();
  if (pans === 0) {
    // Nothing changed: skip building the output (no allocation for clean values).
    out.discard();
    return null;
  }
  return { bytes: out.take(), pans };
}

/** Fewer than 12 digits (of any script) in the string: it cannot hold a PAN. */
function tooFewDigits(s: string): boolean {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (++n >= 12) return false;
    } else if (c >= 0x660 && (unicodeDigit(c) >= 0 || (c >= 0xd800 && c <= 0xdbff)) && ++n >= 12) return false;
  }
  return true;
}

/**
 * Masks every PAN in a string or buffer. A string comes back as a string, a
 * buffer as a buffer; when nothing is masked the input itself is returned.
 */
export function maskText(input: string, opts?: MaskOptions): string;
export function maskText(input: Uint8Array, opts?: MaskOptions): Buffer;
export function maskText(input: string | Uint8Array, opts?: MaskOptions): string | Buffer {
  const r = maskTextCounted(input, opts);
  countPans('text', r.pans);
  return r.out;
}

/** maskText without touching the metrics, plus the number of PANs (for callers that count themselves). */
export function maskTextCounted(input: string, opts?: MaskOptions): { out: string; pans: number };
export function maskTextCounted(input: Uint8Array, opts?: MaskOptions): { out: Buffer; pans: number };
export function maskTextCounted(input: string | Uint8Array, opts?: MaskOptions): { out: string | Buffer; pans: number };
export function maskTextCounted(input: string | Uint8Array, opts?: MaskOptions): { out: string | Buffer; pans: number } {
  const r = resolveLight(opts);
  if (typeof input === 'string') {
    if (tooFewDigits(input)) return { out: input, pans: 0 };
    // The UTF-8 copy is ours: mask it in place rather than assembling an output.
    const buf = Buffer.from(input, 'utf8');
    const pans = maskBytesInPlace(buf, 0, buf.length, r);
    return pans === 0 ? { out: input, pans: 0 } : { out: buf.toString('utf8'), pans };
  }
  const m = maskBytes(input, 0, input.length, r);
  if (m === null) return { out: Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength), pans: 0 };
  return { out: m.bytes, pans: m.pans };
}

/**
 * Masks buf[start, end) in place (same length), e.g. a text value inside a
 * PostgreSQL DataRow message. Returns the number of PANs masked.
 */
export function maskInPlace(buf: Uint8Array, start = 0, end = buf.length, opts?: MaskOptions): number {
  const pans = maskBytesInPlace(buf, start, end, resolveLight(opts));
  countPans('text', pans);
  return pans;
}

/** maskInPlace without the metrics. */
function maskBytesInPlace(buf: Uint8Array, start: number, end: number, r: Pick<ResolvedOptions, 'keepBin' | 'fill'>): number {
  const { scanner } = sharedScanner(r);
  // The common case masks straight into buf: no copy, no output to assemble.
  try {
    scanner.scanInPlace(buf, start, end);
  } catch (err) {
    scanner.takeCount();
    throw err;
  }
  let pans = scanner.takeCount();
  const rest = scanner.bailAt;
  if (rest >= 0) {
    // A run the fast path does not hold (an over-long group or run): the general
    // path from its start; everything before it is already decided.
    const m = maskBytes(buf, rest, end, r);
    if (m !== null) {
      buf.set(m.bytes, rest);
      pans += m.pans;
    }
  }
  return pans;
}
