// The masker every audit event passes through: core/mask's rules (PANs in strings
// and keys, bare-number PANs become masked strings, card-data fields such as cvv
// starred whole), in the three pieces the writer's single serializing walk needs
// (record-json.ts), so that an event is masked without being copied. A PostgreSQL
// event's `statement` is SQL: it is masked SQL-aware first (core/sql/mask-sql.ts:
// card-field literals and Bind values starred, unparseable text fails closed) and
// bounded, so that one huge statement cannot bloat the trail.

import { createHash } from 'node:crypto';
import { DEFAULT_CARD_FIELDS, maskTextCounted, maskValue, normalizeFieldName } from '../mask/index.js';
import type { MaskOptions } from '../mask/index.js';
import { maskSqlText } from '../sql/mask-sql.js';

/** A statement as recorded: masked, and when it was longer than the bound, a prefix plus what identifies the whole. */
export interface MaskedStatement {
  statement: string;
  /** Set when `statement` is a prefix: the UTF-8 length and SHA-256 (hex) of the whole masked text. */
  truncated?: { bytes: number; sha256: string };
}

export interface AuditMasker {
  /** core/mask text masking of one string; `pans` 0 means `out` is the input unchanged. */
  text(s: string): { out: string; pans: number };
  /** Whether the value under this key is card data (starred whole). */
  isCardField(key: string): boolean;
  /** core/mask's structure-aware masking of a parsed value (a masked copy). */
  value(v: unknown): unknown;
  /** An SQL statement as it may be recorded (PostgreSQL events' `statement`). */
  statement?(sql: string): MaskedStatement;
  /** True when the options changed since the last call (a policy reload): the writer drops what it derived from them. */
  refresh?(): boolean;
}

export interface AuditMaskerLimits {
  /** Statements longer than this (UTF-8 bytes, masked) are recorded as a prefix of this length plus length and hash. Default 16 KiB. */
  maxStatementBytes?: number;
}

export const DEFAULT_MAX_STATEMENT_BYTES = 16 * 1024;

/** Keys remembered as card field or not; bounded, since Kubernetes objects bring arbitrary keys. */
const MAX_REMEMBERED_KEYS = 4096;
/** maskValue ignores longer keys (core/mask/value.ts). */
const MAX_CARD_KEY_LENGTH = 64;

/**
 * The audit masker. `opts` is fixed, or a function asked on every refresh() (the
 * sidecar passes the policy in force, so a reload that changes `spec.masking`
 * changes what the trail masks from the next event on).
 */
export function createMasker(opts: MaskOptions | (() => MaskOptions | undefined) = {}, limits: AuditMaskerLimits = {}): AuditMasker {
  const source = typeof opts === 'function' ? opts : () => opts;
  const maxBytes = limits.maxStatementBytes ?? DEFAULT_MAX_STATEMENT_BYTES;
  let current: MaskOptions = {};
  let fields = new Set<string>();
  const known = new Map<string, boolean>();
  let last: { sql: string; out: MaskedStatement } | undefined;
  let seen: MaskOptions | undefined | null = null;
  const refresh = (): boolean => {
    const o = source();
    if (o === seen) return false;
    seen = o;
    current = o ?? {};
    fields = new Set([...DEFAULT_CARD_FIELDS, ...(current.cardFields ?? [])].map(normalizeFieldName).filter((n) => n.length > 0));
    known.clear();
    last = undefined;
    return true;
  };
  refresh();
  return {
    text: (s) => maskTextCounted(s, current),
    isCardField(key) {
      let card = known.get(key);
      if (card === undefined) {
        card = key.length <= MAX_CARD_KEY_LENGTH && fields.has(normalizeFieldName(key));
        if (known.size >= MAX_REMEMBERED_KEYS) known.clear();
        known.set(key, card);
      }
      return card;
    },
    value: (v) => maskValue(v, current),
    statement(sql) {
      // A prepared statement repeats its text on every execution.
      if (last !== undefined && last.sql === sql) return last.out;
      const out = boundStatement(maskSqlText(sql, { keep: current.keep, cardFields: current.cardFields }), maxBytes);
      last = { sql, out };
      return out;
    },
    refresh,
  };
}

function boundStatement(masked: string, maxBytes: number): MaskedStatement {
  // A string of n UTF-16 units has at most 3n UTF-8 bytes: most statements skip the count.
  if (masked.length * 3 <= maxBytes) return { statement: masked };
  const bytes = Buffer.byteLength(masked);
  if (bytes <= maxBytes) return { statement: masked };
  const buf = Buffer.from(masked, 'utf8');
  let cut = maxBytes;
  while (cut > 0 && (buf[cut] & 0xc0) === 0x80) cut--;
  return {
    statement: `${buf.toString('utf8', 0, cut)}…`,
    truncated: { bytes, sha256: createHash('sha256').update(buf).digest('hex') },
  };
}
