// The entry point producers use: an AuditWriter wired to the real card-data
// masker (core/mask) and, when a key file is named, signed checkpoints.

import { AuditWriter } from './writer.js';
import type { AuditWriterOptions, ValueMasker } from './writer.js';
import type { AuditMasker, AuditMaskerLimits } from './masker.js';
import { loadSigningKey } from './keys.js';
import { createMasker } from './masker.js';
import type { MaskOptions } from '../mask/index.js';

export interface OpenAuditWriterOptions extends Omit<AuditWriterOptions, 'mask' | 'signingKey'> {
  /** Overrides the core/mask masker (tests). */
  mask?: AuditMasker | ValueMasker;
  /** Options of the core/mask masker, e.g. the policy's `spec.masking`; a function is asked again before every event (policy reloads). */
  maskOptions?: MaskOptions | (() => MaskOptions | undefined);
  /** Bounds of what is recorded (statement size). */
  maskLimits?: AuditMaskerLimits;
  /** PEM or JWK private key file; enables checkpoints. */
  signingKeyFile?: string;
}

export async function openAuditWriter(opts: OpenAuditWriterOptions): Promise<AuditWriter> {
  const { mask, maskOptions, maskLimits, signingKeyFile, ...rest } = opts;
  const signingKey = signingKeyFile ? await loadSigningKey(signingKeyFile) : undefined;
  return AuditWriter.open({ ...rest, mask: mask ?? createMasker(maskOptions, maskLimits), signingKey });
}

export { AuditWriter, AuditUnavailableError, RECOVERED_EVENT } from './writer.js';
export type { AuditWriterOptions, ValueMasker } from './writer.js';
export type { AuditMasker } from './masker.js';
