// The masker every audit event passes through: core/mask's structure-aware
// masking of parsed JSON values (PANs in strings and keys, bare-number PANs,
// card-data fields starred whole).

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { maskText } from '../mask/text.js';
import type { MaskOptions } from '../mask/options.js';
import type { ValueMasker } from './writer.js';

export async function loadMasker(opts: MaskOptions = {}): Promise<ValueMasker> {
  // TEMPORARY until core/mask/index.ts (maskValue) lands: string-by-string fallback.
  const url = new URL('../mask/index.js', import.meta.url);
  if (existsSync(fileURLToPath(url))) {
    const mod = (await import(url.href)) as { maskValue: (v: unknown, o?: MaskOptions) => unknown };
    return (v) => mod.maskValue(v, opts);
  }
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return maskText(v, opts);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [maskText(k, opts), walk(x)]));
    return v;
  };
  return walk;
}
