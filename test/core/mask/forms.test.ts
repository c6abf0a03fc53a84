// The PAN forms PostgreSQL output and people produce beside plain digit groups:
// other separators, exponent notation, digits glued on, Unicode digits, thousands
// grouping. Each form is generated (fast-check, seeded) inside surrounding text; the
// masked output must hold no full PAN, keep the last four and the byte length, and
// come out the same however the input is cut.

import { expect } from 'chai';
import fc from 'fast-check';
import { cardBrand, createTextMasker, maskJson, maskText } from '../../../core/mask/index.js';
import { luhnComplete } from '../../support/cards.js';

const SEED = 20261201;
const RUNS = 300;

const PREFIXES = ['4', '51', '55', '2221', '2720', '34', '37', '6011', '65', '3528', '36', '62'];

/** A branded Luhn-valid PAN of 15–19 digits (the lengths every form below can carry). */
const panArb = fc
  .record({
    prefix: fc.constantFrom(...PREFIXES),
    len: fc.integer({ min: 15, max: 19 }),
    digits: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 19, maxLength: 19 }),
  })
  .map(({ prefix, len, digits }) => luhnComplete((prefix + digits.join('')).slice(0, len - 1)))
  .filter((p) => cardBrand(p) !== undefined);

/**
 * Text around a PAN, without digits: a digit group next to a PAN can form a longer
 * candidate with it, which masks the kept four too (the glued-digits property covers that).
 */
const aroundArb = fc.array(fc.constantFrom('the', 'card', 'id=', 'x', 'é', '|', '\n', 'ok;', 'μ'), { maxLength: 4 }).map((w) => w.join(' '));

const SEPARATORS = [' ', '-', '.', '/', '_', '\t', '  ', ' -', '\u00a0', '\u2009', '\u202f', '\u3000', '\u1680'];

/** Digits of every script, normalised: what a reader of the output could recover. */
function asciiDigits(s: string): string {
  let out = '';
  for (const ch of s) {
    if (/\p{Nd}/u.test(ch)) {
      const cp = ch.codePointAt(0)!;
      let zero = cp;
      while (/\p{Nd}/u.test(String.fromCodePoint(zero - 1)) && cp - zero < 9) zero--;
      out += String((cp - zero) % 10);
    } else if (ch === '*') out += '*';
  }
  return out;
}

function streamed(input: Buffer, cuts: number[]): Buffer {
  const m = createTextMasker();
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...new Set(cuts.map((x) => x % (input.length + 1)))].sort((a, b) => a - b)) {
    parts.push(m.write(input.subarray(prev, c)));
    prev = c;
  }
  parts.push(m.write(input.subarray(prev)), m.end());
  return Buffer.concat(parts);
}

/** Checks the masking contract on `before + form + after` for the PAN `pan` written as `form`. */
function check(pan: string, form: string, before: string, after: string, cuts: number[], lastFourKept = true): void {
  const input = `${before} ${form} ${after}`;
  const out = maskText(input);
  expect(Buffer.byteLength(out), 'byte length').to.equal(Buffer.byteLength(input));
  expect(asciiDigits(out), 'no full PAN left').not.to.contain(pan);
  expect(out.startsWith(`${before} `) && out.endsWith(` ${after}`), 'surroundings untouched').to.equal(true);
  if (lastFourKept) expect(asciiDigits(out), 'last four kept').to.contain(pan.slice(-4));
  expect(streamed(Buffer.from(input), cuts).toString(), 'chunk invariance').to.equal(out);
}

const cutsArb = fc.array(fc.nat({ max: 200 }), { maxLength: 6 });

function group(pan: string, sep: (i: number) => string, size = 4): string {
  let s = '';
  for (let i = 0; i < pan.length; i += size) s += (i > 0 ? sep(i) : '') + pan.slice(i, i + size);
  return s;
}

describe('mask: PAN forms beyond plain digit groups', () => {
  it('finds PANs grouped by any separator, mixed, single or doubled, ASCII or Unicode space', () => {
    fc.assert(
      fc.property(panArb, fc.array(fc.constantFrom(...SEPARATORS), { minLength: 5, maxLength: 5 }), aroundArb, aroundArb, cutsArb, (pan, seps, a, b, cuts) => {
        const form = group(pan, (i) => seps[i / 4 - 1]);
        check(pan, form, a, b, cuts);
        expect(maskText(form)).to.equal(group(`${'*'.repeat(pan.length - 4)}${pan.slice(-4)}`, (i) => seps[i / 4 - 1]));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('finds a PAN written in float8 exponent notation, trailing zeros carried by the exponent included', () => {
    fc.assert(
      fc.property(panArb, fc.constantFrom('e+', 'e', 'E+', 'E'), aroundArb, aroundArb, cutsArb, (pan, e, a, b, cuts) => {
        const mantissa = pan.replace(/0+$/, '');
        const form = `${mantissa[0]}${mantissa.length > 1 ? `.${mantissa.slice(1)}` : ''}${e}${pan.length - 1}`;
        const input = `${a} ${form} ${b}`;
        const out = maskText(input);
        expect(Buffer.byteLength(out)).to.equal(Buffer.byteLength(input));
        // Every mantissa digit but those standing for the last four is starred.
        const kept = out.slice(a.length + 1, a.length + 1 + form.length).replace(/[eE]\+?\d+$/, '').replace(/[^0-9]/g, '');
        expect(kept).to.equal(mantissa.slice(pan.length - 4));
        expect(streamed(Buffer.from(input), cuts).toString()).to.equal(out);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('finds a PAN in a json (not jsonb) number written with an exponent, and turns it into a masked string', () => {
    expect(maskJson('{"n":4.111111111111111e15,"m":1.5e3}')).to.equal('{"n":"*.***********1111e15","m":1.5e3}');
    expect(maskJson('[5.1051051051051E+15]')).to.equal('["*.***********51E+15"]');
  });

  it('finds a PAN with more digits glued before or after it (a concatenated column)', () => {
    fc.assert(
      fc.property(panArb, fc.stringMatching(/^[0-9]{0,6}$/), fc.stringMatching(/^[0-9]{0,6}$/), aroundArb, aroundArb, cutsArb, (pan, pre, post, a, b, cuts) => {
        const input = `${a} ${pre}${pan}${post} ${b}`;
        const out = maskText(input);
        expect(Buffer.byteLength(out)).to.equal(Buffer.byteLength(input));
        expect(out).not.to.contain(pan);
        expect(streamed(Buffer.from(input), cuts).toString()).to.equal(out);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('finds PANs written in full-width and other Unicode decimal digits, starring each byte of a masked digit', () => {
    const zeros = [0xff10, 0x660, 0x6f0, 0x966, 0x9e6, 0xe50, 0x1d7ce];
    fc.assert(
      fc.property(panArb, fc.constantFrom(...zeros), fc.constantFrom('', ' ', '-', '\u3000'), aroundArb, aroundArb, cutsArb, (pan, zero, sep, a, b, cuts) => {
        const digits = [...pan].map((d) => String.fromCodePoint(zero + Number(d)));
        const form = group(digits.join(''), () => sep, 4 * String.fromCodePoint(zero).length);
        check(pan, form, a, b, cuts);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(maskText('４１１１１１１１１１１１１１１１')).to.equal(`${'*'.repeat(36)}１１１１`);
  });

  it('finds PANs grouped in thousands (to_char, money)', () => {
    fc.assert(
      fc.property(panArb, fc.constantFrom('', '$', '€'), fc.constantFrom('', '.00'), aroundArb, aroundArb, cutsArb, (pan, cur, cents, a, b, cuts) => {
        const head = pan.length % 3 || 3;
        let form = pan.slice(0, head);
        for (let i = head; i < pan.length; i += 3) form += `,${pan.slice(i, i + 3)}`;
        // Cents are digits glued on by a dot: they may extend a candidate over the last four.
        check(pan, `${cur}${form}${cents}`, a, b, cuts, cents === '');
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(maskText('$4,111,111,111,111,111.00')).to.equal('$*,***,***,***,**1,111.00');
  });

  it('does not join digit groups by a comma that is not thousands grouping', () => {
    expect(maskText('4111,1111,1111,1111')).to.equal('4111,1111,1111,1111');
  });
});
