// maskValue: the same rules for objects a caller already holds.

import { expect } from 'chai';
import { maskValue } from '../../../core/mask/index.js';

describe('mask: parsed values', () => {
  it('masks PANs in nested strings and keys and leaves the input unchanged', () => {
    const input = { user: { note: 'card 4111 1111 1111 1111', list: ['5555555555554444', 'x'] }, '4111111111111111': 1 };
    const out = maskValue(input);
    expect(out).to.deep.equal({ user: { note: 'card **** **** **** 1111', list: ['************4444', 'x'] }, '************1111': 1 });
    expect(input.user.note).to.equal('card 4111 1111 1111 1111');
  });

  it('turns a number that is a PAN into the masked string', () => {
    expect(maskValue({ pan: 4111111111111111, qty: 3 })).to.deep.equal({ pan: '************1111', qty: 3 });
    expect(maskValue(4111111111111111n)).to.equal('************1111');
  });

  it('stars card-data fields whole, numbers included', () => {
    expect(maskValue({ CVV: '123', pin: 4321, track_1: 'B4111^X', cid: null })).to.deep.equal({ CVV: '***', pin: '****', track_1: '*******', cid: null });
  });

  it('masks Buffers (Secret data after base64 decoding) as text', () => {
    const out = maskValue({ data: Buffer.from('4111111111111111') }) as { data: Buffer };
    expect(out.data.toString()).to.equal('************1111');
  });

  it('survives cycles', () => {
    const a: Record<string, unknown> = { p: '4111111111111111' };
    a.self = a;
    const out = maskValue(a) as Record<string, unknown>;
    expect(out.p).to.equal('************1111');
    expect(out.self).to.equal(out);
  });

  it('keeps a parsed "__proto__" member as a member, masked, without touching the prototype', () => {
    const out = maskValue(JSON.parse('{"__proto__":{"pan":"4111111111111111"},"a":1}'));
    expect(JSON.stringify(out)).to.equal('{"__proto__":{"pan":"************1111"},"a":1}');
    expect(Object.getPrototypeOf(out)).to.equal(Object.prototype);
  });
});
