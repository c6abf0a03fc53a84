// The masking counters on the shared registry.

import { expect } from 'chai';
import { registry } from '../../../core/metrics.js';
import { maskJson, maskText } from '../../../core/mask/index.js';

async function value(name: string, format: string): Promise<number> {
  const m = (await registry.getSingleMetric(name)?.get()) as { values: { value: number; labels: Record<string, string> }[] } | undefined;
  return m?.values.find((v) => v.labels.format === format)?.value ?? 0;
}

describe('mask: metrics', () => {
  it('counts masked PANs by format', async () => {
    const text = await value('agentgate_pans_masked_total', 'text');
    const json = await value('agentgate_pans_masked_total', 'json');
    maskText('4111111111111111 and 5555555555554444');
    maskJson('{"a":"4111111111111111","b":4111111111111111}');
    expect(await value('agentgate_pans_masked_total', 'text')).to.equal(text + 2);
    expect(await value('agentgate_pans_masked_total', 'json')).to.equal(json + 2);
  });

  it('counts starred card-data fields', async () => {
    const before = await value('agentgate_card_fields_masked_total', 'json');
    maskJson('{"cvv":"123","pin":"1"}');
    expect(await value('agentgate_card_fields_masked_total', 'json')).to.equal(before + 2);
  });
});
