// The knobs every masker takes, resolved once so the hot loops read plain fields.

import type { MaskingSpec } from '../policy/types.js';

export type KeepMode = 'last4' | 'bin+last4';

export interface MaskOptions {
  /** Which digits of a PAN stay readable: `last4` (default) or `bin+last4` (first six too). */
  keep?: KeepMode;
  /**
   * What a masked digit becomes: `'*'` (default) or `'0'`, for values that must
   * stay numeric (integer/numeric SQL columns): `4111111111111111` → `0000000000001111`.
   */
  fill?: '*' | '0';
  /**
   * Extra JSON keys whose values are card data and are starred whole, beside
   * DEFAULT_CARD_FIELDS. Compared case-insensitively with `_` and `-` ignored.
   */
  cardFields?: readonly string[];
}

/** JSON keys whose values are card data (compared after normalizeFieldName). */
export const DEFAULT_CARD_FIELDS: readonly string[] = [
  'cvv', 'cvv2', 'cvc', 'cvc2', 'cid', 'pin', 'securityCode', 'track1', 'track2', 'trackData',
];

/** Lower-case ASCII, `_` and `-` dropped: `Security_Code` and `security-code` both become `securitycode`. */
export function normalizeFieldName(name: string): string {
  return name.replace(/[_-]/g, '').toLowerCase();
}

export interface ResolvedOptions {
  keepBin: boolean;
  fill: number;
  cardFields: ReadonlySet<string>;
  /** Longest normalized card field name: keys longer than this are not compared. */
  cardFieldMaxLen: number;
}

// Resolved option sets are shared and never modified: a proxy creates a masker per
// response, and resolving (normalizing every card field name) would otherwise be
// most of what creating one costs. Bounded: policies have few distinct option sets.
const resolvedCache = new Map<string, ResolvedOptions>();
const RESOLVED_CACHE_MAX = 256;
let resolvedDefault: ResolvedOptions | undefined;

export function resolveOptions(o: MaskOptions = {}): ResolvedOptions {
  const keep = o.keep ?? 'last4';
  if (keep !== 'last4' && keep !== 'bin+last4') throw new TypeError(`mask: keep must be 'last4' or 'bin+last4', not '${String(keep)}'`);
  const fill = o.fill ?? '*';
  if (fill !== '*' && fill !== '0') throw new TypeError(`mask: fill must be '*' or '0', not '${String(fill)}'`);
  const extra = o.cardFields;
  const plain = keep === 'last4' && fill === '*' && (extra === undefined || extra.length === 0);
  if (plain && resolvedDefault !== undefined) return resolvedDefault;
  const key = plain ? '' : `${keep}\u0000${fill}\u0000${extra === undefined ? '' : extra.join('\u0000')}`;
  const hit = resolvedCache.get(key);
  if (hit !== undefined) return hit;
  const cardFields = new Set([...DEFAULT_CARD_FIELDS, ...(extra ?? [])].map(normalizeFieldName).filter((n) => n.length > 0));
  let max = 0;
  for (const f of cardFields) max = Math.max(max, f.length);
  const r: ResolvedOptions = Object.freeze({ keepBin: keep === 'bin+last4', fill: fill.charCodeAt(0), cardFields, cardFieldMaxLen: max });
  if (plain) resolvedDefault = r;
  else {
    if (resolvedCache.size >= RESOLVED_CACHE_MAX) resolvedCache.clear();
    resolvedCache.set(key, r);
  }
  return r;
}

/** MaskOptions from a policy's `spec.masking`. */
export function optionsFromSpec(spec: Pick<MaskingSpec, 'pan' | 'fields'>): MaskOptions {
  return { keep: spec.pan, cardFields: spec.fields };
}
