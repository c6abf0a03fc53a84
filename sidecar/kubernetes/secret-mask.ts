// Kubernetes Secrets hide their values from a text scanner: `data` is base64. Each
// value is decoded, masked as bytes (length-preserving, so binary values survive)
// and re-encoded; `stringData` is masked as text; keys naming card data (cvv, pin, …)
// are starred whole. With `masking.secrets: redact` every value is emptied instead.
// kubectl's last-applied-configuration annotation holds a copy of the Secret, so it
// gets the same treatment. Everything else in the object is masked like any JSON.

import { maskInPlace } from '../../core/mask/text.js';
import { maskValue } from '../../core/mask/value.js';
import { normalizeFieldName, resolveOptions } from '../../core/mask/options.js';
import type { MaskOptions } from '../../core/mask/options.js';

export type SecretMode = 'mask' | 'redact';

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
export const REDACTED_ANNOTATION = 'agentgate.dev/redacted';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export class SecretMasker {
  private readonly cardFields: ReadonlySet<string>;

  constructor(private readonly mode: SecretMode, private readonly opts: MaskOptions) {
    this.cardFields = resolveOptions(opts).cardFields;
  }

  /**
   * A masked copy of a Secret, SecretList, Table of Secrets or watch event. The value
   * masker handles everything but `data` (its base64 would hide PANs, and starring a
   * card-data key's base64 would leave invalid base64), which is masked decoded here.
   */
  maskDocument(v: unknown): unknown {
    if (!isObj(v)) return maskValue(v, this.opts);
    if (v.kind === 'Secret') return this.maskSecret(v);
    if (Array.isArray(v.items)) return { ...maskValue({ ...v, items: [] }, this.opts), items: v.items.map((i) => this.maskDocument(i)) };
    if (v.kind === 'Table' && Array.isArray(v.rows)) {
      return {
        ...maskValue({ ...v, rows: [] }, this.opts),
        rows: v.rows.map((r) => (isObj(r) && isObj(r.object) ? { ...maskValue({ ...r, object: null }, this.opts), object: this.maskDocument(r.object) } : maskValue(r, this.opts))),
      };
    }
    // A watch event: {type, object}
    if (typeof v.type === 'string' && isObj(v.object)) return { ...maskValue({ ...v, object: null }, this.opts), object: this.maskDocument(v.object) };
    return maskValue(v, this.opts);
  }

  private maskSecret(s: Obj): Obj {
    const out: Obj = { ...s };
    delete out.data;
    if (isObj(s.stringData) && this.mode === 'redact') {
      out.stringData = Object.fromEntries(Object.keys(s.stringData).map((k) => [k, '']));
    }
    if (isObj(s.metadata)) {
      const md: Obj = { ...s.metadata };
      if (isObj(md.annotations)) {
        const ann: Obj = { ...md.annotations };
        const la = ann[LAST_APPLIED];
        if (typeof la === 'string') ann[LAST_APPLIED] = this.maskLastApplied(la);
        if (this.mode === 'redact') ann[REDACTED_ANNOTATION] = 'true';
        md.annotations = ann;
      } else if (this.mode === 'redact') {
        md.annotations = { [REDACTED_ANNOTATION]: 'true' };
      }
      out.metadata = md;
    }
    const masked = maskValue(out, this.opts);
    if (isObj(s.data)) {
      const data: Obj = {};
      for (const [k, val] of Object.entries(s.data)) data[maskValue(k, this.opts)] = typeof val === 'string' ? this.maskBase64(k, val) : null;
      masked.data = data;
    }
    return masked;
  }

  private maskLastApplied(text: string): string {
    try {
      const parsed = JSON.parse(text) as unknown;
      if (isObj(parsed) && parsed.kind === 'Secret') return `${JSON.stringify(this.maskSecret(parsed))}\n`;
    } catch {
      // Not JSON: the value masker still scans it as text.
    }
    return this.mode === 'redact' ? '' : text;
  }

  private isCard(key: string): boolean {
    return this.cardFields.has(normalizeFieldName(key));
  }

  private maskBase64(key: string, value: string): string {
    if (this.mode === 'redact') return '';
    const bytes = Buffer.from(value, 'base64');
    if (this.isCard(key)) bytes.fill(0x2a);
    else maskInPlace(bytes, 0, bytes.length, this.opts);
    return bytes.toString('base64');
  }
}
