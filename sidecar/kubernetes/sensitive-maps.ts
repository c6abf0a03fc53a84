// A byte-stream filter in front of the JSON masker for responses that are not Secrets:
// it finds every `"annotations": {…}` and `"binaryData": {…}` member (and for ConfigMaps
// `"data": {…}`, whose values are often JSON files) at any depth (list items, Table rows,
// watch events), masks that map as a document (base64 decoded and checked, JSON held in
// a string masked structurally, escaped digits decoded) and passes every other byte
// through untouched, as views of the chunk. The JSON masker behind it then masks the
// whole body as usual. The cost on a body without these members is one memory search
// per member name per chunk.
//
// Why matching the bytes is enough: inside a JSON string a quote is always escaped, so
// `"annotations"` followed by `:` and `{` is a member name and its `{` a real object
// start in any valid JSON. A name that merely ends in `annotations` (`"x\"annotations"`)
// also matches; masking that map too only costs time. Invalid JSON fails in the JSON
// masker behind (or here, when a map does not parse): the body is refused either way.

import type { StreamMasker } from '../../core/mask/text.js';
import type { DocumentMasker } from './document-mask.js';

/** Larger than any annotations or binaryData the API server stores (objects are limited to ~1.5 MiB). */
export const MAX_MAP_BYTES = 8 * 1024 * 1024;

export type MapKind = 'annotations' | 'binaryData' | 'data';
const NAMES: Record<MapKind, Buffer> = { annotations: Buffer.from('"annotations"'), binaryData: Buffer.from('"binaryData"'), data: Buffer.from('"data"') };
const enum Phase {
  Key,
  BeforeColon,
  BeforeBrace,
  Map,
}
const EMPTY = Buffer.alloc(0);

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

export class SensitiveMapFilter implements StreamMasker {
  readonly pansMasked = 0;
  private holding = false;
  /** Bytes of the held member that came in earlier chunks (copied: the caller may reuse a chunk's memory). */
  private held: Buffer[] = [];
  private heldLen = 0;
  private which = 0;
  private phase = Phase.Key;
  /** Bytes of the member name matched so far (Phase.Key). */
  private matched = 0;
  /** Offset of the map's `{` from the start of the member name. */
  private mapAt = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  /**
   * A string of the map holds an escaped quote (JSON held in a value: `\"cvv\"`) or an
   * escaped backslash (`\\u0034`, an escape spelled out as text): the only ways a data
   * map can hide a PAN from the JSON masker, which handles plain and `\u0034` digits.
   */
  private mayHide = false;

  private readonly kinds: MapKind[];
  private readonly names: Buffer[];
  private readonly longest: number;

  /** `kinds`: the maps to mask (annotations and binaryData for any resource, data too for ConfigMaps). */
  constructor(private readonly doc: DocumentMasker, kinds: readonly MapKind[] = ['annotations', 'binaryData']) {
    this.kinds = [...kinds];
    this.names = this.kinds.map((k) => NAMES[k]);
    this.longest = Math.max(...this.names.map((n) => n.length));
  }

  write(chunk: Uint8Array): Buffer {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Unchanged bytes leave as views of the chunk, one stretch from `from` on; a rewritten
    // map, or a member held across chunks, breaks the stretch.
    let out: Buffer[] | undefined;
    const emit = (b: Buffer) => {
      if (b.length) (out ??= []).push(b);
    };
    let from = 0;
    let p = 0;
    /** Where the held member starts in this chunk (0 when it began in an earlier one). */
    let seg = 0;
    /** Where each member name occurs next in buf (-1: nowhere after p; -2: not searched yet). */
    const nextAt = this.names.map(() => -2);
    while (p < buf.length) {
      if (!this.holding) {
        let at = -1;
        for (let k = 0; k < this.names.length; k++) {
          if (nextAt[k]! !== -1 && nextAt[k]! < p) nextAt[k] = buf.indexOf(this.names[k]!, p);
          const n = nextAt[k]!;
          if (n >= 0 && (at < 0 || n < at)) {
            at = n;
            this.which = k;
          }
        }
        if (at < 0) {
          const tail = this.partialKeyAtEnd(buf, p);
          if (tail > 0) {
            emit(buf.subarray(from, buf.length - tail));
            this.start(this.names[this.which]!.length === tail ? Phase.BeforeColon : Phase.Key, tail);
            this.keep(buf.subarray(buf.length - tail));
            from = buf.length;
          }
          break;
        }
        const len = this.names[this.which]!.length;
        this.start(Phase.BeforeColon, len);
        seg = at;
        p = at + len;
        continue;
      }
      const r = this.scan(buf, p, seg);
      if (r.kind === 'more') {
        emit(buf.subarray(from, seg));
        this.keep(buf.subarray(seg));
        from = buf.length;
        break;
      }
      const earlier = this.held.length > 0;
      if (r.kind === 'not-a-map') {
        if (earlier) {
          emit(this.takeHeld());
          from = seg;
        }
        this.holding = false;
        p = r.at;
        continue;
      }
      const whole = earlier ? Buffer.concat([...this.held, buf.subarray(seg, r.at + 1)]) : buf.subarray(seg, r.at + 1);
      const masked = this.rewrite(whole);
      this.takeHeld();
      this.holding = false;
      if (masked !== undefined || earlier) {
        emit(buf.subarray(from, seg));
        emit(masked ?? whole);
        from = r.at + 1;
      }
      p = r.at + 1;
    }
    if (this.holding && from < buf.length) {
      // Still inside a member at the end of the chunk: held from where it started.
      emit(buf.subarray(from, seg));
      this.keep(buf.subarray(seg));
      from = buf.length;
    }
    if (from < buf.length) {
      if (!out) return from === 0 ? buf : buf.subarray(from);
      out.push(buf.subarray(from));
    }
    if (!out) return EMPTY;
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  end(): Buffer {
    // A body that ends inside a held member is not valid JSON; the JSON masker behind refuses it.
    if (!this.holding) return EMPTY;
    this.holding = false;
    return this.takeHeld();
  }

  reset(): void {
    this.holding = false;
    this.held = [];
    this.heldLen = 0;
  }

  // ------------------------------------------------------------------ internals

  /** How many bytes at the end of buf[from…] are a proper prefix of a member name (setting `which`). */
  private partialKeyAtEnd(buf: Buffer, from: number): number {
    const q = buf.lastIndexOf(0x22);
    if (q < from || q < buf.length - this.longest) return 0;
    const n = buf.length - q;
    for (let k = 0; k < this.names.length; k++) {
      const key = this.names[k]!;
      if (n < key.length && buf.compare(key, 0, n, q, buf.length) === 0) {
        this.which = k;
        return n;
      }
    }
    return 0;
  }

  private start(phase: Phase, matched: number): void {
    this.holding = true;
    this.held = [];
    this.heldLen = 0;
    this.phase = phase;
    this.matched = matched;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.mayHide = false;
  }

  /** Holds a copy of the member's bytes that end this chunk. */
  private keep(b: Buffer): void {
    if (b.length === 0) return;
    this.heldLen += b.length;
    if (this.heldLen > MAX_MAP_BYTES) throw new Error(`an ${this.names[this.which]!.toString()} map larger than ${MAX_MAP_BYTES} bytes`);
    this.held.push(Buffer.from(b));
  }

  private takeHeld(): Buffer {
    const b = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held);
    this.held = [];
    this.heldLen = 0;
    return b;
  }

  /**
   * Advances the member's state over buf[p…] (the member's bytes in this chunk start at
   * `seg`): the map's closing brace, the byte that shows it is no map, or more needed.
   */
  private scan(buf: Buffer, p: number, seg: number): { kind: 'more' } | { kind: 'not-a-map' | 'map-end'; at: number } {
    const key = this.names[this.which]!;
    for (let i = p; i < buf.length; i++) {
      const c = buf[i]!;
      switch (this.phase) {
        case Phase.Key:
          if (c !== key[this.matched]) return { kind: 'not-a-map', at: i };
          if (++this.matched === key.length) this.phase = Phase.BeforeColon;
          break;
        case Phase.BeforeColon:
          if (c === 0x3a) this.phase = Phase.BeforeBrace;
          else if (!isSpace(c)) return { kind: 'not-a-map', at: i };
          break;
        case Phase.BeforeBrace:
          if (c === 0x7b) {
            this.phase = Phase.Map;
            this.mapAt = this.heldLen + (i - seg);
            this.depth = 1;
          } else if (!isSpace(c)) return { kind: 'not-a-map', at: i };
          break;
        default:
          if (this.inString) {
            i = this.inMapString(buf, i);
            if (i >= buf.length) return { kind: 'more' };
          } else if (c === 0x22) this.inString = true;
          else if (c === 0x7b || c === 0x5b) this.depth++;
          else if ((c === 0x7d || c === 0x5d) && --this.depth === 0) return { kind: 'map-end', at: i };
      }
    }
    return { kind: 'more' };
  }

  /** Walks a string of the map from buf[i]; returns the index of its closing quote (or buf.length). */
  private inMapString(buf: Buffer, i: number): number {
    // A plain loop: the strings of a map are short, shorter than what a native search call costs.
    if (this.escaped) {
      this.escaped = false;
      if (buf[i] === 0x22 || buf[i] === 0x5c) this.mayHide = true;
      i++;
    }
    const n = buf.length;
    for (; i < n; i++) {
      const c = buf[i]!;
      if (c === 0x22) {
        this.inString = false;
        return i;
      }
      if (c === 0x5c) {
        if (++i === n) {
          // The chunk ends on a backslash: it escapes the next chunk's first byte.
          this.escaped = true;
          return n;
        }
        const e = buf[i]!;
        if (e === 0x22 || e === 0x5c) this.mayHide = true;
      }
    }
    return n;
  }

  /** The member with its map masked, or undefined when the map hides nothing. */
  private rewrite(whole: Buffer): Buffer | undefined {
    const kind = this.kinds[this.which]!;
    if (kind === 'data' && !this.mayHide) return undefined;
    const mapBytes = whole.subarray(this.mapAt);
    let map: unknown;
    try {
      map = JSON.parse(mapBytes.toString('utf8'));
    } catch (err) {
      throw new Error(`an ${this.names[this.which]!.toString()} map is not valid JSON (${(err as Error).message})`);
    }
    const masked = kind === 'annotations' ? this.doc.annotationMap(map) : kind === 'binaryData' ? this.doc.binaryDataMap(map) : this.doc.textMap(map);
    if (masked === map) return undefined;
    return Buffer.concat([whole.subarray(0, this.mapAt), Buffer.from(JSON.stringify(masked))]);
  }
}
