// The proxy's view of core/mask: PAN masking with the options of the policy in
// force (`spec.masking.pan`, card fields), re-resolved when a reload changes them.

import { maskText } from '../../core/mask/text.js';
import type { MaskOptions } from '../../core/mask/options.js';
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
      plain = { keep: m?.pan ?? 'last4', cardFields: m?.fields };
      zero = { ...plain, fill: '0' };
    }
  };
  return {
    maskText(text, digitFill) {
      opts();
      return maskText(text, digitFill === '0' ? zero : plain);
    },
    maskJson(text) {
      // PANs inside JSON strings and numbers keep the document's framing when
      // masked as text (same length); card-data keys are starred by the JSON masker.
      opts();
      return maskText(text, plain);
    },
  };
}
