// Masking counters. Incremented once per write or call with the number found,
// never per digit, so the hot loop stays free of metric updates.

import { counter } from '../metrics.js';

export type MaskFormat = 'text' | 'json' | 'value';

const pans = counter({
  name: 'agentgate_pans_masked_total',
  help: 'Card numbers (PANs) masked, by input format (text, json, value = in-memory object).',
  labelNames: ['format'] as const,
});

const fields = counter({
  name: 'agentgate_card_fields_masked_total',
  help: 'Card-data field values (CVV, PIN, track data, ...) starred whole, by input format.',
  labelNames: ['format'] as const,
});

export function countPans(format: MaskFormat, n: number): void {
  if (n > 0) pans.inc({ format }, n);
}

export function countCardFields(format: MaskFormat, n: number): void {
  if (n > 0) fields.inc({ format }, n);
}
