// The hash chain. Each record carries `seq` (1, 2, 3, … across rotated files),
// `prevHash` (the previous record's `hash`; GENESIS_HASH for seq 1) and
//
//   hash = lowercase hex SHA-256 of the UTF-8 bytes of
//          prevHash ‖ canonicalJson(record without `hash`)
//
// (prevHash is the 64 hex characters, no separator; the canonical JSON is RFC 8785,
// see canonical.ts, and includes `seq` and `prevHash` themselves). Changing,
// removing, inserting or reordering any record breaks the link to its successor.

import { hash as digest } from 'node:crypto';
import { canonicalJson } from './canonical.js';
import type { AuditRecord } from './types.js';

export const GENESIS_HASH = '0'.repeat(64);

const HEX64 = /^[0-9a-f]{64}$/;

export function isHash(s: unknown): s is string {
  return typeof s === 'string' && HEX64.test(s);
}

/** The hash of a record; `hash` itself, if present, is left out. */
export function recordHash(record: { prevHash: string; hash?: unknown }): string {
  const { hash: _omit, ...rest } = record;
  return digest('sha256', record.prevHash + canonicalJson(rest), 'hex');
}

/**
 * The canonical JSON that is hashed: `{...event, seq, prevHash}` without `hash`
 * (seq and prevHash last, so that an event cannot override them). The general
 * form; the writer's hot path builds the same text in one walk (record-json.ts).
 */
export function canonicalBody(event: object, seq: number, prevHash: string): string {
  const unsealed = { ...event, seq, prevHash } as { hash?: unknown };
  // `delete` would turn the object into a slow dictionary for every later access; only pay it when needed.
  if ('hash' in unsealed) delete unsealed.hash;
  return canonicalJson(unsealed);
}

/** The chain link: hash of prevHash ‖ canonical body. */
export function linkHash(prevHash: string, body: string): string {
  return digest('sha256', prevHash + body, 'hex');
}

/** Chains an already masked event after (seq, prevHash) and returns the sealed record. */
export function seal<T extends object>(event: T, seq: number, prevHash: string): T & Pick<AuditRecord, 'seq' | 'prevHash' | 'hash'> {
  const unsealed = { ...event, seq, prevHash } as T & { seq: number; prevHash: string; hash?: string };
  if ('hash' in unsealed) delete unsealed.hash;
  unsealed.hash = linkHash(prevHash, canonicalJson(unsealed));
  return unsealed as T & Pick<AuditRecord, 'seq' | 'prevHash' | 'hash'>;
}
