// Masking counters. The hot paths add to plain numbers; prom-client sees them when
// the registry is read (the counters' collect hook), so masking a DataRow value
// costs an addition, not a labelled-counter update.

import { counter } from '../metrics.js';

export type MaskFormat = 'text' | 'json' | 'value';

const FORMATS: readonly MaskFormat[] = ['text', 'json', 'value'];
const pendingPans = [0, 0, 0];
const pendingFields = [0, 0, 0];

function index(format: MaskFormat): number {
  return format === 'text' ? 0 : format === 'json' ? 1 : 2;
}

function flush(pending: number[], inc: (format: MaskFormat, n: number) => void): void {
  for (let k = 0; k < FORMATS.length; k++) {
    const n = pending[k];
    if (n > 0) {
      pending[k] = 0;
      inc(FORMATS[k], n);
    }
  }
}

const pans = counter({
  name: 'agentgate_pans_masked_total',
  help: 'Card numbers (PANs) masked, by input format (text, json, value = in-memory object).',
  labelNames: ['format'] as const,
  collect() {
    flush(pendingPans, (format, n) => this.inc({ format }, n));
  },
});

const fields = counter({
  name: 'agentgate_card_fields_masked_total',
  help: 'Card-data field values (CVV, PIN, track data, ...) starred whole, by input format.',
  labelNames: ['format'] as const,
  collect() {
    flush(pendingFields, (format, n) => this.inc({ format }, n));
  },
});
// A counter registered before this module (get-or-create) has no collect hook: count directly then.
const deferred = (pans as unknown as { collect?: unknown }).collect !== undefined && (fields as unknown as { collect?: unknown }).collect !== undefined;

export function countPans(format: MaskFormat, n: number): void {
  if (n <= 0) return;
  if (deferred) pendingPans[index(format)] += n;
  else pans.inc({ format }, n);
}

export function countCardFields(format: MaskFormat, n: number): void {
  if (n <= 0) return;
  if (deferred) pendingFields[index(format)] += n;
  else fields.inc({ format }, n);
}
