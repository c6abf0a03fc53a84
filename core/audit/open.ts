// The entry point producers use: an AuditWriter wired to the real card-data
// masker (core/mask) and, when a key file is named, signed checkpoints.

import { AuditWriter } from './writer.js';
import type { AuditWriterOptions, ValueMasker } from './writer.js';
import type { AuditMasker } from './masker.js';
import { loadSigningKey } from './keys.js';
import { createMasker } from './masker.js';
import type { MaskOptions } from '../mask/index.js';

export interface OpenAuditWriterOptions extends Omit<AuditWriterOptions, 'mask' | 'signingKey'> {
  /** Overrides the core/mask masker (tests). */
  mask?: AuditMasker | ValueMasker;
  /** Options of the core/mask masker, e.g. the policy's `spec.masking`. */
  maskOptions?: MaskOptions;
  /** PEM or JWK private key file; enables checkpoints. */
  signingKeyFile?: string;
}

export async function openAuditWriter(opts: OpenAuditWriterOptions): Promise<AuditWriter> {
  const { mask, maskOptions, signingKeyFile, ...rest } = opts;
  const signingKey = signingKeyFile ? await loadSigningKey(signingKeyFile) : undefined;
  return AuditWriter.open({ ...rest, mask: mask ?? createMasker(maskOptions), signingKey });
}

export { AuditWriter, AuditUnavailableError } from './writer.js';
export type { AuditWriterOptions, ValueMasker } from './writer.js';
export type { AuditMasker } from './masker.js';
