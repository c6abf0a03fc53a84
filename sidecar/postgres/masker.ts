// The proxy's view of core/mask: PAN masking with the options of the policy in
// force (`spec.masking.pan`, card fields), re-resolved when a reload changes them.

import { maskInPlace, maskJson, maskText } from '../../core/mask/index.js';
import type { MaskOptions } from '../../core/mask/index.js';
import type { MaskingSpec, PolicySource } from '../../core/policy/types.js';
import type { TextMasker } from './result-mask.js';

export function policyMasker(source: PolicySource): TextMasker {
  let spec: MaskingSpec | undefined;
  let plain: MaskOptions = {};
  let zero: MaskOptions = { fill: '0' };
  const opts = () => {
    const m = source.current().masking;
    if (m !== spec) {
      spec = m;
      // A starred column's name is a card-data key too: `row_to_json(c)` and `json_build_object('cvv', cvv)` keep it starred.
      const columns = (m?.columns ?? []).map((c) => c.slice(c.lastIndexOf('.') + 1)).filter((c) => c.length > 0);
      plain = { keep: m?.pan ?? 'last4', cardFields: columns.length ? [...(m?.fields ?? []), ...columns] : m?.fields };
      zero = { ...plain, fill: '0' };
    }
  };
  return {
    maskText(text, digitFill) {
      opts();
      return maskText(text, digitFill === '0' ? zero : plain);
    },
    maskInPlace(buf, start, end, digitFill) {
      opts();
      return maskInPlace(buf, start, end, digitFill === '0' ? zero : plain);
    },
    maskJson(text) {
      // PANs in strings, keys and numbers, and values of card-data keys (cvv, pin, …).
      opts();
      return maskJson(text, plain);
    },
  };
}
