// Secret responses: every object of a Secrets request is a Secret, whatever its `kind`
// says (list items have none), so its base64 `data` is decoded, masked and re-encoded,
// or emptied with `masking.secrets: redact`. The rules are document-mask.ts's.

import type { MaskOptions } from '../../core/mask/options.js';
import { DocumentMasker } from './document-mask.js';
export { REDACTED_ANNOTATION } from './document-mask.js';
export type { SecretMode } from './document-mask.js';
import type { SecretMode } from './document-mask.js';

export class SecretMasker {
  private readonly doc: DocumentMasker;

  constructor(mode: SecretMode, opts: MaskOptions) {
    this.doc = new DocumentMasker(mode, opts);
  }

  /** A masked copy of a Secret, a Secret list, a Table of Secrets or a watch event of one. */
  maskDocument(v: unknown): unknown {
    return this.doc.maskDocument(v, true);
  }
}
