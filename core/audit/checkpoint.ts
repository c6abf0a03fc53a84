// Signed checkpoints: a compact JWS over {seq, hash, time} of the newest record
// that was on disk (fsynced) when the checkpoint was taken. A checkpoint is
// written twice:
// - as a chained `system` record in the audit stream itself (event `checkpoint`,
//   field `checkpoint` = the JWS), so it travels with the events (Loki, rotation)
//   and removing it breaks the chain like removing any record;
// - as one line in a side file (default `<audit file>.checkpoints`), which is the
//   anchor against tail truncation: cutting whole records off the end of the audit
//   file keeps every remaining link valid, but leaves a signed checkpoint that
//   names a seq beyond the end. Keep the side file where the audit file's writer
//   cannot rewrite it (another volume, a shipped copy) for that to hold.

import { CompactSign, compactVerify, decodeProtectedHeader, errors } from 'jose';
import type { SigningKey, VerifyingKey } from './keys.js';
import { isHash } from './chain.js';

export const CHECKPOINT_EVENT = 'checkpoint';
/** First record of a file that continues a chain from a rotated file. */
export const CONTINUATION_EVENT = 'audit-file-continued';
export const CHECKPOINT_TYP = 'agentgate-audit-checkpoint';

export interface CheckpointClaims {
  seq: number;
  hash: string;
  /** RFC 3339 time the checkpoint was signed. */
  time: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function signCheckpoint(key: SigningKey, claims: CheckpointClaims): Promise<string> {
  return new CompactSign(encoder.encode(JSON.stringify({ seq: claims.seq, hash: claims.hash, time: claims.time })))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: CHECKPOINT_TYP })
    .sign(key.privateKey);
}

export type CheckpointCheck =
  | { ok: true; claims: CheckpointClaims; kid: string }
  | { ok: false; reason: string };

function parseClaims(bytes: Uint8Array): CheckpointClaims | undefined {
  try {
    const c = JSON.parse(decoder.decode(bytes)) as Partial<CheckpointClaims>;
    if (typeof c.seq === 'number' && Number.isSafeInteger(c.seq) && c.seq >= 1 && isHash(c.hash) && typeof c.time === 'string') {
      return { seq: c.seq, hash: c.hash, time: c.time };
    }
  } catch {
    // reported below
  }
  return undefined;
}

/** Verifies the signature with key and returns the claims. */
export async function verifyCheckpoint(jws: string, key: VerifyingKey): Promise<CheckpointCheck> {
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(jws).kid;
  } catch {
    return { ok: false, reason: 'not a compact JWS' };
  }
  if (kid !== undefined && kid !== key.kid) return { ok: false, reason: `signed by key ${kid}, not by ${key.kid}` };
  try {
    const { payload, protectedHeader } = await compactVerify(jws, key.publicKey, { algorithms: [key.alg] });
    if (protectedHeader.typ !== CHECKPOINT_TYP) return { ok: false, reason: `JWS typ is ${String(protectedHeader.typ)}, not ${CHECKPOINT_TYP}` };
    const claims = parseClaims(payload);
    if (!claims) return { ok: false, reason: 'payload is not {seq, hash, time}' };
    return { ok: true, claims, kid: key.kid };
  } catch (err) {
    if (err instanceof errors.JWSSignatureVerificationFailed) return { ok: false, reason: `signature does not verify with key ${key.kid}` };
    return { ok: false, reason: (err as Error).message };
  }
}

/** Reads the claims without checking the signature (verify without --key). */
export function peekCheckpoint(jws: string): CheckpointClaims | undefined {
  const parts = jws.split('.');
  if (parts.length !== 3) return undefined;
  try {
    return parseClaims(Buffer.from(parts[1], 'base64url'));
  } catch {
    return undefined;
  }
}
