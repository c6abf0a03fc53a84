// Serializes an audit event ONCE, on the append hot path: the result is at the same
// time the canonical JSON that is hashed (RFC 8785, exactly what canonicalJson
// gives for the record without `hash`) and the body of the line that is written.
// Masking happens in the same walk, string by string, so the event is never
// copied:
// - a string (value or key) is handed to the PAN masker only when it holds a run
//   of 12 or more digits joined by what core/mask links digit groups with — the
//   shortest run it can call a PAN — so the common clean string costs one scan;
// - a number is masked through its decimal form, and a masked number becomes a
//   string, as maskValue does;
// - the value of a card-data key (cvv, pin, track2, …) is starred by maskValue
//   itself, so those rules stay core/mask's.
// Anything the walk does not model exactly (a key that a PAN scan would change,
// objects with toJSON such as Date, binary data, BigInt, very deep nesting) makes
// it give up (returns undefined); the writer then takes the general path: mask a
// copy with maskValue and canonicalize that. Both paths give the same bytes for
// the same event (test/core/audit/record-json.test.ts).

import type { AuditMasker } from './masker.js';
import { isRunCodePoint, unicodeDigit } from '../mask/chars.js';

/**
 * The event's own id is a UUID the producer generated: written as it is, since about one
 * random UUID in 700 holds a Luhn-valid digit window that PAN masking would change, and
 * a changed id no longer ties the record to the response header that carried it.
 * Anything else in that field is masked like every other string.
 */
const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export function isEventId(x: unknown): x is string {
  return typeof x === 'string' && x.length === 36 && EVENT_ID.test(x);
}

/** Deeper than any audit event; the general path handles (or refuses) the rest. */
const MAX_DEPTH = 64;
/** The fewest digits core/mask considers a PAN (12–19 digits). */
const MIN_PAN_DIGITS = 12;
/** Shapes remembered; bounded for events with arbitrary keys (Kubernetes objects). */
const MAX_SHAPES = 512;
const MAX_CACHED_KEYS = 64;

/** What the walk needs to know about an object's keys, worked out once per shape. */
interface Shape {
  /** The keys in insertion order, as Object.keys gave them: the cache key. */
  keys: string[];
  /** Sorted by UTF-16 code units (RFC 8785 §3.2.3). */
  order: string[];
  /** `"key":` for each key of order, JSON-escaped. */
  prefix: string[];
  /** Per key of order: its value is card data (starred whole). */
  card: boolean[] | undefined;
  /** A key that PAN masking would change: only the general path re-sorts correctly. */
  bail: boolean;
  ascii: boolean;
}

/** Shapes keyed by the exact key list in insertion order (same producer, same list). */
class ShapeCache {
  private readonly byFirstKey = new Map<string, Shape[]>();
  private size = 0;

  constructor(private readonly make: (keys: string[]) => Shape) {}

  get(keys: string[]): Shape {
    if (keys.length > MAX_CACHED_KEYS) return this.make(keys);
    let list = this.byFirstKey.get(keys[0]);
    if (list) {
      for (let i = 0; i < list.length; i++) if (sameKeys(list[i].keys, keys)) return list[i];
    }
    const shape = this.make(keys);
    if (this.size >= MAX_SHAPES) {
      this.byFirstKey.clear();
      this.size = 0;
      list = undefined;
    }
    if (!list) {
      list = [];
      this.byFirstKey.set(keys[0], list);
    }
    list.push(shape);
    this.size++;
    return shape;
  }
}

function sameKeys(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// Scan results of one string, as bit flags (no allocation per string).
const NEEDS_ESCAPE = 1;
const MAY_HOLD_PAN = 2;
const NOT_ASCII = 4;

/**
 * One pass over a string: does JSON.stringify have to escape anything in it
 * (control characters, quote, backslash, surrogates — paired ones too, which only
 * costs the slower exact path), and does it hold a run of ≥ 12 digits joined by
 * single spaces or hyphens (the only separators core/mask accepts inside a PAN)?
 * Also notes non-ASCII characters, so that an all-ASCII line's byte length is its length.
 */
function scan(s: string, panCheck: boolean): number {
  let flags = 0;
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (++run >= MIN_PAN_DIGITS && panCheck) flags |= MAY_HOLD_PAN;
      continue;
    }
    if (c < 32 || c === 34 || c === 92) flags |= NEEDS_ESCAPE;
    else if (c >= 0x80) {
      flags |= c >= 0xd800 && c <= 0xdfff ? NOT_ASCII | NEEDS_ESCAPE : NOT_ASCII;
      // Unicode digits and spaces can be part of a PAN (core/mask/chars.ts): left to the masker.
      if (c >= 0x660 && (unicodeDigit(c) >= 0 || (c >= 0xd800 && c <= 0xdbff))) {
        if (++run >= MIN_PAN_DIGITS && panCheck) flags |= MAY_HOLD_PAN;
      } else if (run > 0 && !isRunCodePoint(c)) run = 0;
      continue;
    }
    // What may link digit groups (separators, comma, exponent) keeps the count.
    if (run > 0 && !isRunCodePoint(c)) run = 0;
  }
  return flags;
}

const quote = (s: string, flags: number) => ((flags & NEEDS_ESCAPE) !== 0 ? JSON.stringify(s) : `"${s}"`);

export class RecordJson {
  /** PANs masked by the last call (for the metrics). */
  pans = 0;
  /** The last record is all ASCII: its UTF-8 length is its length. */
  ascii = true;
  private bail = false;
  private readonly records: ShapeCache;
  private readonly objects: ShapeCache;

  /** With a masker, every string, number and card-data value is masked on the way; without, written as given. */
  constructor(private readonly masker: AuditMasker | undefined) {
    // The record's own members: the event's keys without seq, prevHash and hash, plus seq and prevHash.
    this.records = new ShapeCache((keys) => this.shape(keys, [...keys.filter((k) => k !== 'seq' && k !== 'prevHash' && k !== 'hash'), 'seq', 'prevHash'].sort()));
    this.objects = new ShapeCache((keys) => this.shape(keys, keys.slice().sort()));
  }

  /**
   * The canonical JSON of `{...event, seq, prevHash}` without `hash`, masked,
   * WITHOUT its closing brace (the line continues with `,"hash":…}`: no slicing
   * and re-flattening of a 1 KB string per event); undefined when the event needs
   * the general path.
   */
  recordOpen(event: object, seq: number, prevHash: string): string | undefined {
    this.pans = 0;
    this.bail = false;
    this.ascii = true;
    const e = event as Record<string, unknown>;
    if (typeof e.toJSON === 'function') return undefined;
    const shape = this.records.get(Object.keys(e));
    if (shape.bail) return undefined;
    if (!shape.ascii) this.ascii = false;
    const { order, prefix, card } = shape;
    let s = '{';
    let first = true;
    for (let i = 0; i < order.length; i++) {
      const k = order[i];
      let v: string | undefined;
      if (k === 'seq') v = String(seq);
      else if (k === 'prevHash') v = `"${prevHash}"`;
      else if (k === 'auditID' && isEventId(e[k])) v = `"${e[k]}"`;
      else {
        v = card !== undefined && card[i] ? this.starred(k, e[k]) : this.value(e[k], 1);
        if (this.bail) return undefined;
        if (v === undefined) continue;
      }
      s += first ? prefix[i] + v : `,${prefix[i]}${v}`;
      first = false;
    }
    return s;
  }

  private shape(keys: string[], order: string[]): Shape {
    const m = this.masker;
    const prefix: string[] = [];
    let card: boolean[] | undefined;
    let bail = false;
    let ascii = true;
    for (let i = 0; i < order.length; i++) {
      const k = order[i];
      const f = scan(k, m !== undefined);
      if ((f & NOT_ASCII) !== 0) ascii = false;
      if ((f & MAY_HOLD_PAN) !== 0 && m!.text(k).pans > 0) bail = true;
      if (m !== undefined && m.isCardField(k)) (card ??= new Array<boolean>(order.length).fill(false))[i] = true;
      prefix.push(`${quote(k, f)}:`);
    }
    return { keys, order, prefix, card, bail, ascii };
  }

  /** A card-data value: maskValue stars it whole (and counts it); written as it returned it. */
  private starred(k: string, x: unknown): string | undefined {
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') return undefined;
    const v = (this.masker!.value({ [k]: x }) as Record<string, unknown>)[k];
    if (v !== null && typeof v === 'object') {
      // Starred objects are rare: the general path writes them (Dates, buffers and all).
      this.bail = true;
      return undefined;
    }
    return this.value(v, 1, false);
  }

  private value(x: unknown, depth: number, masking = true): string | undefined {
    switch (typeof x) {
      case 'string': {
        const f = scan(x, masking && this.masker !== undefined);
        if ((f & NOT_ASCII) !== 0) this.ascii = false;
        if ((f & MAY_HOLD_PAN) !== 0) {
          const r = this.masker!.text(x);
          if (r.pans > 0) {
            this.pans += r.pans;
            return quote(r.out, f);
          }
        }
        return quote(x, f);
      }
      case 'number': {
        if (!Number.isFinite(x)) return 'null';
        const t = String(x); // JSON.stringify's form for finite numbers, hence RFC 8785's
        if (masking && this.masker !== undefined && t.length >= MIN_PAN_DIGITS && (scan(t, true) & MAY_HOLD_PAN) !== 0) {
          const r = this.masker.text(t);
          if (r.pans > 0) {
            this.pans += r.pans;
            return `"${r.out}"`;
          }
        }
        return t;
      }
      case 'boolean':
        return x ? 'true' : 'false';
      case 'undefined':
      case 'function':
      case 'symbol':
        return undefined;
      case 'bigint':
        this.bail = true;
        return undefined;
      default:
        break;
    }
    if (x === null) return 'null';
    if (depth >= MAX_DEPTH || ArrayBuffer.isView(x) || typeof (x as { toJSON?: unknown }).toJSON === 'function') {
      this.bail = true;
      return undefined;
    }
    if (Array.isArray(x)) {
      let s = '[';
      for (let i = 0; i < x.length; i++) {
        const v = this.value(x[i], depth + 1);
        if (this.bail) return undefined;
        s += (i === 0 ? '' : ',') + (v ?? 'null');
      }
      return `${s}]`;
    }
    const o = x as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 0) return '{}';
    const shape = this.objects.get(keys);
    if (shape.bail) {
      this.bail = true;
      return undefined;
    }
    if (!shape.ascii) this.ascii = false;
    const { order, prefix, card } = shape;
    let s = '{';
    let first = true;
    for (let i = 0; i < order.length; i++) {
      const k = order[i];
      const v = card !== undefined && card[i] ? this.starred(k, o[k]) : this.value(o[k], depth + 1);
      if (this.bail) return undefined;
      if (v === undefined) continue;
      s += first ? prefix[i] + v : `,${prefix[i]}${v}`;
      first = false;
    }
    return `${s}}`;
  }
}
