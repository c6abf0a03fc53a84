// Property tests (fast-check) of the masking contract: idempotent, only digits
// change, no branded Luhn-valid PAN survives, chunking never changes the output,
// JSON output always parses.

import { expect } from 'chai';
import fc from 'fast-check';
import { cardBrand, createJsonMasker, createTextMasker, maskJson, maskText, RUN_WINDOW } from '../../../core/mask/index.js';
import type { MaskOptions } from '../../../core/mask/index.js';
import { luhnComplete } from '../../support/cards.js';

const PREFIXES = ['4', '51', '55', '2221', '2720', '34', '37', '6011', '65', '3528', '36', '300', '62', '6759', '5018'];


/** A Luhn-valid number with a brand prefix, 12–19 digits, optionally grouped. */
const panArb = fc
  .record({
    prefix: fc.constantFrom(...PREFIXES),
    len: fc.integer({ min: 12, max: 19 }),
    digits: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 19, maxLength: 19 }),
    seps: fc.array(fc.constantFrom('', '', '', ' ', '-'), { minLength: 19, maxLength: 19 }),
  })
  .map(({ prefix, len, digits, seps }) => {
    const pan = luhnComplete((prefix + digits.join('')).slice(0, len - 1));
    let s = '';
    for (let i = 0; i < pan.length; i++) s += (i > 0 ? seps[i] : '') + pan[i];
    return s;
  });

const pieceArb = fc.oneof(
  { weight: 3, arbitrary: panArb },
  { weight: 3, arbitrary: fc.stringMatching(/^[0-9]{1,6}$/) },
  { weight: 2, arbitrary: fc.constantFrom(' ', '-', '  ', '*', 'x', 'card', '\n', 'é', '4242') },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
);
const textArb = fc.array(pieceArb, { maxLength: 14 }).map((p) => p.join(''));
const bytesArb = fc.oneof(
  textArb.map((s) => Buffer.from(s)),
  fc.tuple(textArb, fc.uint8Array({ maxLength: 8 }), textArb).map(([a, b, c]) => Buffer.concat([Buffer.from(a), b, Buffer.from(c)])),
);

/** Reference detector, straight from the issue's words: every whole-group sub-run. */
function findPans(s: string): string[] {
  const found: string[] = [];
  const isD = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
  for (let a = 0; a < s.length; a++) {
    if (!isD(s[a]) || isD(s[a - 1])) continue;
    for (let b = a + 1; b <= s.length && b - a <= 37; b++) {
      if (!isD(s[b - 1]) || isD(s[b])) continue;
      const sub = s.slice(a, b);
      if (!/^[0-9]+(?:[ -][0-9]+)*$/.test(sub)) continue;
      const digits = sub.replace(/[ -]/g, '');
      if (digits.length >= 12 && digits.length <= 19 && cardBrand(digits)) found.push(sub);
    }
  }
  return found;
}

function streamText(input: Buffer, cuts: number[], opts?: MaskOptions): Buffer {
  const m = createTextMasker(opts);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...new Set(cuts.map((x) => x % (input.length + 1)))].sort((x, y) => x - y)) {
    parts.push(m.write(input.subarray(prev, c)));
    prev = c;
  }
  parts.push(m.write(input.subarray(prev)), m.end());
  return Buffer.concat(parts);
}

describe('mask: properties', () => {
  it('is idempotent', () => {
    fc.assert(fc.property(bytesArb, (b) => {
      const once = maskText(b);
      expect(maskText(once).equals(once)).to.equal(true);
    }), { numRuns: 500 });
  });

  it('never changes a non-digit byte, nor the length, and turns digits only into *', () => {
    fc.assert(fc.property(bytesArb, (b) => {
      const out = maskText(b);
      expect(out.length).to.equal(b.length);
      for (let i = 0; i < b.length; i++) {
        if (out[i] === b[i]) continue;
        expect(b[i] >= 0x30 && b[i] <= 0x39, `byte ${i}`).to.equal(true);
        expect(out[i]).to.equal(0x2a);
      }
    }), { numRuns: 500 });
  });

  it('never leaves a Luhn-valid branded PAN', () => {
    fc.assert(fc.property(textArb, (s) => {
      expect(findPans(maskText(s))).to.deep.equal([]);
    }), { numRuns: 500 });
  });

  it('masks every PAN the reference detector finds in the input', () => {
    fc.assert(fc.property(textArb, (s) => {
      const out = maskText(s);
      for (const pan of findPans(s)) expect(out.includes(pan), pan).to.equal(false);
    }), { numRuns: 300 });
  });

  it('gives the same bytes however the input is split into chunks', () => {
    fc.assert(fc.property(bytesArb, fc.array(fc.nat(), { maxLength: 6 }), (b, cuts) => {
      expect(streamText(b, cuts).equals(maskText(b))).to.equal(true);
    }), { numRuns: 500 });
  });

  it('is chunk-invariant on runs longer than the hold-back window', () => {
    const long = fc.array(fc.oneof(panArb, fc.stringMatching(/^[0-9]{1,4}$/)), { minLength: 400, maxLength: 900 }).map((p) => Buffer.from(p.join(' ')));
    fc.assert(fc.property(long, fc.array(fc.nat(), { maxLength: 5 }), (b, cuts) => {
      const whole = maskText(b);
      expect(streamText(b, cuts).equals(whole)).to.equal(true);
      expect(whole.length).to.be.greaterThan(RUN_WINDOW);
      expect(findPans(whole.toString())).to.deep.equal([]);
    }), { numRuns: 60 });
  });

  it('keeps these properties with bin+last4', () => {
    const opts: MaskOptions = { keep: 'bin+last4' };
    fc.assert(fc.property(bytesArb, fc.array(fc.nat(), { maxLength: 6 }), (b, cuts) => {
      const once = maskText(b, opts);
      expect(streamText(b, cuts, opts).equals(once)).to.equal(true);
      expect(maskText(once, opts).equals(once)).to.equal(true);
      expect(findPans(once.toString('latin1'))).to.deep.equal([]);
    }), { numRuns: 500 });
  });
});

const jsonArb = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    panArb.map((p) => Number(p.replace(/[ -]/g, ''))),
    textArb,
    fc.string(),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.constantFrom('cvv', 'PIN', 'track_2', 'note'), textArb, fc.string()), tie('value'), { maxKeys: 4 }),
  ),
})).value;

describe('mask: JSON properties', () => {
  it('always produces JSON that parses, with no PAN left in any string', () => {
    fc.assert(fc.property(jsonArb, (v) => {
      const out = JSON.parse(maskJson(JSON.stringify(v))) as unknown;
      const strings: string[] = [];
      const visit = (x: unknown): void => {
        if (typeof x === 'string') strings.push(x);
        else if (typeof x === 'number') strings.push(String(x));
        else if (Array.isArray(x)) x.forEach(visit);
        else if (x && typeof x === 'object') for (const [k, y] of Object.entries(x)) { strings.push(k); visit(y); }
      };
      visit(out);
      for (const s of strings) expect(findPans(s), s).to.deep.equal([]);
    }), { numRuns: 400 });
  });

  it('gives the same output however an NDJSON stream is split', () => {
    fc.assert(fc.property(fc.array(jsonArb, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }), (vs, cuts) => {
      const input = Buffer.from(vs.map((v) => JSON.stringify(v)).join('\n'));
      const whole = maskJson(input);
      const m = createJsonMasker();
      const parts: Buffer[] = [];
      let prev = 0;
      for (const c of [...new Set(cuts.map((x) => x % (input.length + 1)))].sort((x, y) => x - y)) {
        parts.push(m.write(input.subarray(prev, c)));
        prev = c;
      }
      parts.push(m.write(input.subarray(prev)), m.end());
      expect(Buffer.concat(parts).equals(whole)).to.equal(true);
    }), { numRuns: 300 });
  });
});

/** JSON.stringify, except that digits, spaces and hyphens in strings are \u-escaped where `esc` says so. */
function serializeEscaped(v: unknown, esc: boolean[]): string {
  let k = 0;
  const str = (s: string): string => {
    let out = '"';
    for (const ch of s) {
      if (/[0-9 -]/.test(ch) && esc[k++ % esc.length]) out += `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;
      else out += JSON.stringify(ch).slice(1, -1);
    }
    return `${out}"`;
  };
  const ser = (x: unknown): string => {
    if (typeof x === 'string') return str(x);
    if (Array.isArray(x)) return `[${x.map(ser).join(',')}]`;
    if (x && typeof x === 'object') return `{${Object.entries(x).map(([key, y]) => `${str(key)}:${ser(y)}`).join(',')}}`;
    return JSON.stringify(x);
  };
  return ser(v);
}

describe('mask: JSON escapes', () => {
  it('masks an escaped value exactly as the plain one, whatever the chunking', () => {
    fc.assert(fc.property(jsonArb, fc.array(fc.boolean(), { minLength: 1, maxLength: 7 }), fc.array(fc.nat(), { maxLength: 4 }), (v, esc, cuts) => {
      const plain = JSON.parse(maskJson(JSON.stringify(v))) as unknown;
      const input = Buffer.from(serializeEscaped(v, esc));
      const m = createJsonMasker();
      const parts: Buffer[] = [];
      let prev = 0;
      for (const c of [...new Set(cuts.map((x) => x % (input.length + 1)))].sort((x, y) => x - y)) {
        parts.push(m.write(input.subarray(prev, c)));
        prev = c;
      }
      parts.push(m.write(input.subarray(prev)), m.end());
      expect(JSON.parse(Buffer.concat(parts).toString())).to.deep.equal(plain);
    }), { numRuns: 400 });
  });
});
