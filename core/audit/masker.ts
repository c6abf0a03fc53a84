// The masker every audit event passes through: core/mask's rules (PANs in strings
// and keys, bare-number PANs become masked strings, card-data fields such as cvv
// starred whole), in the three pieces the writer's single serializing walk needs
// (record-json.ts), so that an event is masked without being copied.

import { DEFAULT_CARD_FIELDS, maskTextCounted, maskValue, normalizeFieldName } from '../mask/index.js';
import type { MaskOptions } from '../mask/index.js';

export interface AuditMasker {
  /** core/mask text masking of one string; `pans` 0 means `out` is the input unchanged. */
  text(s: string): { out: string; pans: number };
  /** Whether the value under this key is card data (starred whole). */
  isCardField(key: string): boolean;
  /** core/mask's structure-aware masking of a parsed value (a masked copy). */
  value(v: unknown): unknown;
}

/** Keys remembered as card field or not; bounded, since Kubernetes objects bring arbitrary keys. */
const MAX_REMEMBERED_KEYS = 4096;
/** maskValue ignores longer keys (core/mask/value.ts). */
const MAX_CARD_KEY_LENGTH = 64;

export function createMasker(opts: MaskOptions = {}): AuditMasker {
  const fields = new Set([...DEFAULT_CARD_FIELDS, ...(opts.cardFields ?? [])].map(normalizeFieldName).filter((n) => n.length > 0));
  const known = new Map<string, boolean>();
  return {
    text: (s) => maskTextCounted(s, opts),
    isCardField(key) {
      let card = known.get(key);
      if (card === undefined) {
        card = key.length <= MAX_CARD_KEY_LENGTH && fields.has(normalizeFieldName(key));
        if (known.size >= MAX_REMEMBERED_KEYS) known.clear();
        known.set(key, card);
      }
      return card;
    },
    value: (v) => maskValue(v, opts),
  };
}
