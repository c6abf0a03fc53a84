// Masking for values already parsed into JavaScript (audit events, decoded
// Kubernetes Secret data): the same rules as JSON mode, applied to the tree.

import { countCardFields, countPans } from './metrics.js';
import { resolveOptions } from './options.js';
import type { MaskOptions, ResolvedOptions } from './options.js';
import { maskTextCounted } from './text.js';

interface Ctx {
  r: ResolvedOptions;
  opts: MaskOptions;
  pans: number;
  fields: number;
  seen: WeakMap<object, unknown>;
}

/**
 * A masked deep copy of `value`: PANs masked in every string and key, a number
 * that is a PAN becomes the masked string, values of card-data keys starred
 * whole (strings and numbers become `*` of the same length; true/false/null stay).
 * Buffers are masked as text. Values without anything to mask come back equal
 * (primitives identical); objects are always copied, never modified.
 */
export function maskValue<T>(value: T, opts: MaskOptions = {}): T {
  const ctx: Ctx = { r: resolveOptions(opts), opts, pans: 0, fields: 0, seen: new WeakMap() };
  const out = walk(value, ctx, false) as T;
  countPans('value', ctx.pans);
  countCardFields('value', ctx.fields);
  return out;
}

function walk(v: unknown, ctx: Ctx, starred: boolean): unknown {
  switch (typeof v) {
    case 'string':
      return starred ? starString(v) : maskString(v, ctx);
    case 'number':
    case 'bigint': {
      const text = String(v);
      if (starred) return '*'.repeat(text.length);
      if (typeof v === 'number' && !Number.isFinite(v)) return v;
      const m = maskString(text, ctx);
      return m === text ? v : m;
    }
    case 'object':
      break;
    default:
      return v;
  }
  if (v === null) return v;
  if (v instanceof Uint8Array) {
    if (starred) return Buffer.alloc(v.length, '*');
    const r = maskTextCounted(v, ctx.opts);
    ctx.pans += r.pans;
    return r.pans > 0 ? r.out : Buffer.from(v);
  }
  if (v instanceof Date) return new Date(v.getTime());
  const prior = ctx.seen.get(v);
  if (prior !== undefined) return prior;
  if (Array.isArray(v)) {
    const a: unknown[] = [];
    ctx.seen.set(v, a);
    for (const x of v) a.push(walk(x, ctx, starred));
    return a;
  }
  const o: Record<string, unknown> = {};
  ctx.seen.set(v, o);
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const card = !starred && ctx.r.cardFields.has(normalizeKey(k));
    if (card) ctx.fields++;
    const key = maskString(k, ctx);
    const val = walk(x, ctx, starred || card);
    // A parsed `"__proto__"` member is an own property; plain assignment would set the
    // prototype instead and silently drop the member from what is masked and recorded.
    if (key === '__proto__') Object.defineProperty(o, key, { value: val, enumerable: true, writable: true, configurable: true });
    else o[key] = val;
  }
  return o;
}

function normalizeKey(k: string): string {
  return k.length > 64 ? '' : k.replace(/[_-]/g, '').toLowerCase();
}

function maskString(s: string, ctx: Ctx): string {
  const r = maskTextCounted(s, ctx.opts);
  ctx.pans += r.pans;
  return r.out;
}

function starString(s: string): string {
  // One star per character (code point), not per UTF-16 unit.
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++;
  }
  return '*'.repeat(n);
}
