// Masking of a parsed Kubernetes document (an object, a list, a Table, a watch event, a
// Status) by what the resource is, not by what the body says: the API server leaves
// `kind` out of list items, so whether an object is a Secret comes from the request.
//  - Secret `data` and every `binaryData` value are base64: decoded, masked as bytes
//    (length-preserving, binary values survive) and re-encoded; values under card-data
//    keys (cvv, pin, …) are starred whole. `masking.secrets: redact` empties Secret
//    values instead and says so in an annotation.
//  - annotation values may be base64 (decoded and checked) or JSON (kubectl's
//    last-applied-configuration holds a copy of the object): JSON is masked as a document.
//  - any string that holds a JSON object or array is masked structurally, and `\u`
//    escapes of digits are decoded before the scan.
// Everything else is masked like any JSON value: PANs in strings, keys and numbers,
// card-data keys starred. Subtrees with nothing to mask come back as they were (the
// same reference), so the caller can tell whether anything changed.

import { maskInPlace, maskText } from '../../core/mask/text.js';
import { normalizeFieldName, resolveOptions } from '../../core/mask/options.js';
import type { MaskOptions } from '../../core/mask/options.js';
import { base64Form, bytesLookLikeJson, encodeBase64, looksLikeJson, stars, trailingWhitespace, unescapeDigits } from './hidden-forms.js';

export type SecretMode = 'mask' | 'redact';
export const REDACTED_ANNOTATION = 'agentgate.dev/redacted';
export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** JSON held in strings held in JSON…: deeper than this is scanned as text only. */
const MAX_NESTING = 4;
/** Card field names longer than any configured one are not compared (value.ts does the same). */
const MAX_FIELD_KEY = 64;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export class DocumentMasker {
  private readonly cardFields: ReadonlySet<string>;

  constructor(readonly mode: SecretMode, readonly opts: MaskOptions) {
    this.cardFields = resolveOptions(opts).cardFields;
  }

  /**
   * A masked copy of a response or request document for a resource: `secrets` when the
   * request names Secrets (then every object in object position is a Secret, whatever
   * its `kind` says or leaves out); anything else masks Secrets found by `kind` only.
   */
  maskDocument(doc: unknown, secrets = false, depth = 0): unknown {
    if (!isObj(doc)) return this.walk(doc, depth);
    if (doc.kind === 'Status') return this.walk(doc, depth);
    if (typeof doc.type === 'string' && isObj(doc.object) && isWatchEvent(doc)) {
      return this.rebuild(doc, 'object', this.maskDocument(doc.object, secrets, depth), depth);
    }
    if (doc.kind === 'Table' && Array.isArray(doc.rows)) {
      const rows = this.mapSame(doc.rows, (r) => (isObj(r) && isObj(r.object) ? this.rebuild(r, 'object', this.maskDocument(r.object, secrets, depth), depth) : this.walk(r, depth)));
      return this.rebuild(doc, 'rows', rows, depth);
    }
    if (Array.isArray(doc.items)) {
      const items = this.mapSame(doc.items, (i) => (isObj(i) ? this.maskObject(i, secrets || i.kind === 'Secret', depth) : this.walk(i, depth)));
      return this.rebuild(doc, 'items', items, depth);
    }
    return this.maskObject(doc, secrets || doc.kind === 'Secret', depth);
  }

  /** One object; `secret` says whether its `data`/`stringData` are a Secret's. */
  maskObject(o: Obj, secret: boolean, depth = 0): Obj {
    return mapMembers(o, (k, v) => {
      if (secret && k === 'data' && isObj(v)) return this.base64Map(v, this.mode === 'redact');
      if (secret && k === 'stringData' && isObj(v) && this.mode === 'redact') return emptied(v);
      if (secret && k === 'metadata' && isObj(v)) return this.secretMetadata(v, depth);
      return this.member(k, v, depth);
    }, (k) => this.key(k));
  }

  /** A masked annotation value: JSON as a document, base64 decoded and checked, else text. */
  annotationValue(v: string, depth = 0): string {
    if (looksLikeJson(v) && depth < MAX_NESTING) {
      const m = this.embeddedJson(v, depth);
      if (m !== undefined) return m;
    }
    const b = base64Form(v);
    if (b) {
      const masked = this.maskBytes(b.bytes, false, depth);
      if (masked) return encodeBase64({ ...b, bytes: masked });
    }
    return this.text(v, depth);
  }

  /** A masked base64 value (Secret data, binaryData); the value itself when it hides nothing. */
  base64Value(key: string, v: string, depth = 0): string {
    const bytes = Buffer.from(v, 'base64');
    const masked = this.maskBytes(bytes, this.isCard(key), depth);
    return masked ? masked.toString('base64') : v;
  }

  /** A parsed `annotations` map, masked (the map itself when it hides nothing). */
  annotationMap(m: unknown): unknown {
    return isObj(m) ? this.annotations(m, 0) : this.walk(m, 0);
  }

  /** A parsed `binaryData` map, masked (the map itself when it hides nothing). */
  binaryDataMap(m: unknown): unknown {
    return isObj(m) ? this.base64Map(m, false) : this.walk(m, 0);
  }

  /**
   * A parsed map of text values (ConfigMap `data`) with its hidden forms masked: JSON values
   * as documents, escaped digits decoded. Plain PANs are left to the JSON masker that sees
   * the body next, so a map that only holds those keeps its bytes.
   */
  textMap(m: unknown): unknown {
    if (!isObj(m)) return m;
    return mapMembers(m, (_k, v) => {
      if (typeof v !== 'string') return v;
      if (looksLikeJson(v)) return this.embeddedJson(v, 0) ?? v;
      const plain = unescapeDigits(v);
      if (plain === v) return v;
      const masked = maskText(plain, this.opts);
      return masked === plain ? v : masked;
    }, (k) => k);
  }

  // ------------------------------------------------------------------ internals

  private member(k: string, v: unknown, depth: number): unknown {
    if (this.isCard(k)) return starred(v);
    if (k === 'annotations' && isObj(v)) return this.annotations(v, depth);
    if (k === 'binaryData' && isObj(v)) return this.base64Map(v, false);
    return this.walk(v, depth);
  }

  private secretMetadata(md: Obj, depth: number): Obj {
    const redact = this.mode === 'redact';
    const masked = this.maskObject(md, false, depth);
    if (!redact) return masked;
    const ann = isObj(masked.annotations) ? masked.annotations : {};
    const la = ann[LAST_APPLIED];
    return { ...masked, annotations: { ...ann, ...(typeof la === 'string' && !looksLikeJson(la) ? { [LAST_APPLIED]: '' } : {}), [REDACTED_ANNOTATION]: 'true' } };
  }

  private annotations(a: Obj, depth: number): Obj {
    return mapMembers(a, (_k, v) => (typeof v === 'string' ? this.annotationValue(v, depth) : this.walk(v, depth)), (k) => this.key(k));
  }

  private base64Map(m: Obj, redact: boolean): Obj {
    return mapMembers(m, (k, v) => (redact ? '' : typeof v === 'string' ? this.base64Value(k, v) : this.walk(v, 0)), (k) => this.key(k));
  }

  /** Masked bytes (a copy), or undefined when they hide nothing. */
  private maskBytes(bytes: Buffer, card: boolean, depth: number): Buffer | undefined {
    if (card) return bytes.length ? Buffer.alloc(bytes.length, 0x2a) : undefined;
    if (depth < MAX_NESTING && bytesLookLikeJson(bytes)) {
      const m = this.embeddedJson(bytes.toString('utf8'), depth);
      if (m !== undefined) return Buffer.from(m, 'utf8');
    }
    const copy = Buffer.from(bytes);
    return maskInPlace(copy, 0, copy.length, this.opts) > 0 ? copy : undefined;
  }

  /** JSON in a string masked as a document: the new text, or undefined when it is not JSON or hides nothing. */
  private embeddedJson(s: string, depth: number): string | undefined {
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      return undefined;
    }
    const masked = this.maskDocument(parsed, false, depth + 1);
    return masked === parsed ? undefined : `${JSON.stringify(masked)}${trailingWhitespace(s)}`;
  }

  private walk(v: unknown, depth: number): unknown {
    switch (typeof v) {
      case 'string':
        return this.text(v, depth);
      case 'number': {
        if (!Number.isFinite(v)) return v;
        const t = String(v);
        const m = maskText(t, this.opts);
        return m === t ? v : m;
      }
      case 'object':
        if (v === null) return v;
        if (Array.isArray(v)) return this.mapSame(v, (x) => this.walk(x, depth));
        return this.maskObject(v as Obj, false, depth);
      default:
        return v;
    }
  }

  private text(s: string, depth: number): string {
    if (depth < MAX_NESTING && looksLikeJson(s)) {
      const m = this.embeddedJson(s, depth);
      if (m !== undefined) return m;
    }
    const plain = unescapeDigits(s);
    const m = maskText(plain, this.opts);
    return m === plain ? s : m;
  }

  private key(k: string): string {
    return maskText(k, this.opts);
  }

  private isCard(k: string): boolean {
    return k.length <= MAX_FIELD_KEY && this.cardFields.has(normalizeFieldName(k));
  }

  /** `o` with `field` replaced by `value` and every other member masked. */
  private rebuild(o: Obj, field: string, value: unknown, depth: number): Obj {
    return mapMembers(o, (k, v) => (k === field ? value : this.member(k, v, depth)), (k) => this.key(k));
  }

  private mapSame(a: unknown[], f: (x: unknown) => unknown): unknown[] {
    let out: unknown[] | undefined;
    for (let i = 0; i < a.length; i++) {
      const m = f(a[i]);
      if (!out && m !== a[i]) out = a.slice(0, i);
      if (out) out.push(m);
    }
    return out ?? a;
  }
}

function isWatchEvent(o: Obj): boolean {
  for (const k in o) if (k !== 'type' && k !== 'object') return false;
  return true;
}

function starred(v: unknown): unknown {
  if (typeof v === 'string') return stars(v);
  if (typeof v === 'number' || typeof v === 'bigint') return '*'.repeat(String(v).length);
  if (Array.isArray(v)) return v.map(starred);
  if (isObj(v)) {
    const out: Obj = {};
    for (const [k, x] of Object.entries(v)) define(out, k, starred(x));
    return out;
  }
  return v;
}

function emptied(m: Obj): Obj {
  const out: Obj = {};
  for (const k of Object.keys(m)) define(out, k, '');
  return out;
}

/** `o` with each member mapped (keys by `key`); `o` itself when nothing changed. */
function mapMembers(o: Obj, value: (k: string, v: unknown) => unknown, key: (k: string) => string): Obj {
  let out: Obj | undefined;
  for (const [k, v] of Object.entries(o)) {
    const mv = value(k, v);
    const mk = key(k);
    if (!out && (mv !== v || mk !== k)) {
      out = {};
      for (const [pk, pv] of Object.entries(o)) {
        if (pk === k) break;
        define(out, pk, pv);
      }
    }
    if (out) define(out, mk, mv);
  }
  return out ?? o;
}

/** A parsed `"__proto__"` member is an own property; plain assignment would set the prototype instead. */
function define(o: Obj, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}
