// The maskers' fast paths must decide exactly as their general paths: the
// word-at-a-time digit search at every alignment, masking in place, the JSON
// escapes decoded inside a chunk, and maskers reused through reset().

import { expect } from 'chai';
import fc from 'fast-check';
import { createJsonMasker, createTextMasker, maskInPlace, maskJson, maskText, maskTextCounted } from '../../../core/mask/index.js';
import { resolveOptions } from '../../../core/mask/options.js';
import { luhnComplete } from '../../support/cards.js';


const panArb = fc
  .record({
    prefix: fc.constantFrom('4', '51', '2221', '37', '6011', '62', '5018', '36'),
    len: fc.integer({ min: 12, max: 19 }),
    digits: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 19, maxLength: 19 }),
    seps: fc.array(fc.constantFrom('', '', ' ', '-'), { minLength: 19, maxLength: 19 }),
  })
  .map(({ prefix, len, digits, seps }) => {
    const pan = luhnComplete((prefix + digits.join('')).slice(0, len - 1));
    let s = '';
    for (let i = 0; i < pan.length; i++) s += (i > 0 ? seps[i] : '') + pan[i];
    return s;
  });

const pieceArb = fc.oneof(
  { weight: 2, arbitrary: panArb },
  { weight: 3, arbitrary: fc.stringMatching(/^[0-9]{1,6}$/) },
  { weight: 1, arbitrary: fc.stringMatching(/^[0-9]{18,25}$/) },
  { weight: 3, arbitrary: fc.constantFrom(' ', '-', '  ', 'x', 'card ', '\n', 'é', 'log line of words ', '\u00ff') },
);
/** Long enough for the word-at-a-time search (it starts at 256 bytes). */
const longTextArb = fc.array(pieceArb, { minLength: 60, maxLength: 160 }).map((p) => p.join(''));

/** `s` as bytes starting `at` bytes into a larger buffer: every alignment of the word view. */
function placed(s: string, at: number): Buffer {
  const b = Buffer.from(s);
  const big = Buffer.alloc(b.length + 16, 0x37);
  b.copy(big, at);
  return big.subarray(at, at + b.length);
}

/** Masks in chunks too short for the word view: the byte-at-a-time reference. */
function byBytes(b: Buffer): Buffer {
  const m = createTextMasker();
  const parts: Buffer[] = [];
  for (let i = 0; i < b.length; i += 100) parts.push(m.write(b.subarray(i, i + 100)));
  parts.push(m.end());
  return Buffer.concat(parts);
}

describe('mask: fast paths', () => {
  it('finds digits four bytes at a time exactly as byte by byte, at every alignment', () => {
    fc.assert(fc.property(longTextArb, fc.integer({ min: 0, max: 7 }), (s, at) => {
      const b = placed(s, at);
      const m = createTextMasker();
      const whole = Buffer.concat([m.write(b), m.end()]);
      expect(whole.equals(byBytes(b))).to.equal(true);
    }), { numRuns: 200 });
  });

  it('decides grouped runs of up to 19 digits as the general evaluator does, bytes and counts', () => {
    // Short PANs beside short numbers, so sub-runs starting after the first group are PANs too.
    const shortPan = panArb.filter((p) => p.replace(/[ -]/g, '').length <= 15);
    const runArb = fc.oneof(
      fc.tuple(fc.stringMatching(/^[0-9]{1,4}$/), fc.constantFrom(' ', '-'), shortPan).map(([a, sep, p]) => a + sep + p),
      fc.tuple(shortPan, fc.constantFrom(' ', '-'), fc.stringMatching(/^[0-9]{1,4}$/)).map(([p, sep, a]) => p + sep + a),
      fc.array(fc.oneof(panArb, fc.stringMatching(/^[0-9]{1,8}$/)), { minLength: 1, maxLength: 4 }).map((p) => p.join(' ')),
    );
    fc.assert(fc.property(fc.array(runArb, { minLength: 1, maxLength: 6 }), fc.boolean(), (runs, bin) => {
      const opts = bin ? { keep: 'bin+last4' as const } : {};
      const b = Buffer.from(runs.join(' x '));
      const whole = createTextMasker(opts);
      const a = Buffer.concat([whole.write(b), whole.end()]);
      // One byte per write: every run is held and decided by the evaluator.
      const bytewise = createTextMasker(opts);
      const parts: Buffer[] = [];
      for (let i = 0; i < b.length; i++) parts.push(bytewise.write(b.subarray(i, i + 1)));
      parts.push(bytewise.end());
      expect(a.toString()).to.equal(Buffer.concat(parts).toString());
      expect(whole.pansMasked).to.equal(bytewise.pansMasked);
    }), { numRuns: 400 });
  });

  it('masks in place exactly as maskText does, and counts the same PANs', () => {
    fc.assert(fc.property(longTextArb, fc.integer({ min: 0, max: 7 }), fc.boolean(), (s, at, zero) => {
      const opts = zero ? { fill: '0' as const } : {};
      const b = placed(s, at);
      const expected = maskTextCounted(Buffer.from(b), opts);
      const n = maskInPlace(b, 0, b.length, opts);
      expect(b.equals(expected.out)).to.equal(true);
      expect(n).to.equal(expected.pans);
    }), { numRuns: 200 });
  });

  it('masks in place a slice after a digit run longer than the window', () => {
    const long = '7'.repeat(5000);
    const b = Buffer.from(`id ${long} card 4111111111111111 and 5555 5555 5555 4444 end`);
    expect(maskInPlace(b, 3, b.length)).to.equal(2);
    expect(b.toString()).to.equal(`id ${long} card ************1111 and **** **** **** 4444 end`);
  });

  it('leaves bytes outside the slice alone when masking in place', () => {
    const b = Buffer.from('4111111111111111|4111111111111111|4111111111111111');
    expect(maskInPlace(b, 17, 33)).to.equal(1);
    expect(b.toString()).to.equal('4111111111111111|************1111|4111111111111111');
  });

  it('decodes escapes inside a chunk exactly as escapes cut by chunk ends', () => {
    const strArb = fc.array(fc.oneof(pieceArb, fc.constantFrom('\n', '\t', '"', '\\', '/', 'é', '\u2028', '\u0001')), { maxLength: 12 }).map((p) => p.join(''));
    const docArb = fc.dictionary(fc.oneof(fc.constantFrom('cvv', 'Track\n2', 'note'), strArb), strArb, { maxKeys: 5 });
    fc.assert(fc.property(fc.array(docArb, { minLength: 1, maxLength: 3 }), (docs) => {
      // \u-escape some non-ASCII characters so both escape forms occur.
      const input = Buffer.from(docs.map((d) => JSON.stringify(d).replace(/[é\u2028]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)).join('\n'));
      const whole = maskJson(input);
      const m = createJsonMasker();
      const parts: Buffer[] = [];
      for (let i = 0; i < input.length; i++) parts.push(m.write(input.subarray(i, i + 1)));
      parts.push(m.end());
      expect(Buffer.concat(parts).toString()).to.equal(whole.toString());
    }), { numRuns: 300 });
  });

  it('recognizes a card-data key spelled with escapes', () => {
    expect(maskJson('{"c\\u0076v":"123","\\u0050IN":4321,"note\\n":"4111111111111111\\n"}')).to.equal('{"c\\u0076v":"***","\\u0050IN":"****","note\\n":"************1111\\n"}');
  });

  it('masks a PAN ending right before an escape and leaves one with an escape inside it alone', () => {
    expect(maskJson('["4111111111111111\\t","4111 1111\\t1111 1111"]')).to.equal('["************1111\\t","4111 1111\\t1111 1111"]');
  });

  it('masks a reset JSON masker as a new one, also after invalid input', () => {
    const m = createJsonMasker();
    expect(() => m.write(Buffer.from('{"a": 4111 x'))).to.throw(/invalid JSON/);
    m.reset();
    const input = Buffer.from('{"a":4111111111111111,"cvv":"123"}\n');
    expect(Buffer.concat([m.write(input), m.end()]).toString()).to.equal('{"a":"************1111","cvv":"***"}\n');
    expect(m.pansMasked).to.equal(1);
    m.reset();
    expect(m.pansMasked).to.equal(0);
    expect(Buffer.concat([m.write(input.subarray(0, 10)), m.write(input.subarray(10)), m.end()]).toString()).to.equal('{"a":"************1111","cvv":"***"}\n');
  });

  it('drops a held run when a text masker is reset', () => {
    const m = createTextMasker();
    expect(m.write(Buffer.from('card 4111 1111')).toString()).to.equal('card ');
    m.reset();
    expect(Buffer.concat([m.write(Buffer.from('4111111111111111 ok')), m.end()]).toString()).to.equal('************1111 ok');
  });

  it('resolves equal options once and shares the result', () => {
    expect(resolveOptions({ keep: 'bin+last4', cardFields: ['iban'] })).to.equal(resolveOptions({ keep: 'bin+last4', cardFields: ['iban'] }));
    expect(resolveOptions({})).to.equal(resolveOptions({ keep: 'last4', fill: '*', cardFields: [] }));
    expect(resolveOptions({ cardFields: ['iban'] }).cardFields.has('iban')).to.equal(true);
    expect(resolveOptions({}).cardFields.has('iban')).to.equal(false);
  });

  it('masks a string PAN the same through maskText and maskInPlace', () => {
    const s = 'paid 4111-1111-1111-1111 today';
    const b = Buffer.from(s);
    maskInPlace(b);
    expect(b.toString()).to.equal(maskText(s));
  });
});
