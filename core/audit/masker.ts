// The masker every audit event passes through: core/mask's structure-aware
// masking of parsed values (PANs in strings and keys, bare-number PANs become
// masked strings, card-data fields such as cvv starred whole).

import { maskValue } from '../mask/index.js';
import type { MaskOptions } from '../mask/index.js';
import type { ValueMasker } from './writer.js';

export function createMasker(opts: MaskOptions = {}): ValueMasker {
  return (v) => maskValue(v, opts);
}
