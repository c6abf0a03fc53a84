// Text masking: the candidate rule, brand table, keep modes, fill,
// and the streaming contract (chunk boundaries, invalid UTF-8, bounded hold-back).

import { expect } from 'chai';
import { createTextMasker, isPan, cardBrand, maskInPlace, maskText, RUN_WINDOW } from '../../../core/mask/index.js';

function streamed(input: Buffer, cuts: number[]): Buffer {
  const m = createTextMasker();
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    parts.push(m.write(input.subarray(prev, c)));
    prev = c;
  }
  parts.push(m.end());
  return Buffer.concat(parts);
}

describe('mask: PAN detection in text', () => {
  it('masks a grouped Visa number, keeping separators and the last four', () => {
    expect(maskText('4111 1111 1111 1111')).to.equal('**** **** **** 1111');
  });

  it('finds the card inside a longer separated run (qty 10 …)', () => {
    expect(maskText('qty 10 4111 1111 1111 1111')).to.equal('qty 10 **** **** **** 1111');
  });

  it('masks a PAN glued to letters', () => {
    expect(maskText('card4111111111111111')).to.equal('card************1111');
  });

  it('masks Mastercard numbers in the 2-series (2221–2720)', () => {
    expect(maskText('mc 2223003122003222.')).to.equal('mc ************3222.');
    expect(maskText('2720990000000007')).to.equal('************0007');
  });

  it('masks a 15-digit Amex number', () => {
    expect(maskText('amex 3782 822463 10005')).to.equal('amex **** ****** *0005');
  });

  it('leaves a number that fails the Luhn check untouched', () => {
    expect(maskText('4111 1111 1111 1112')).to.equal('4111 1111 1111 1112');
  });

  it('finds a PAN followed by more digits inside one digit group', () => {
    expect(maskText('id 41111111111111111225 end')).to.equal('id ************11111225 end');
  });

  it('finds a PAN preceded by more digits inside one digit group', () => {
    expect(maskText('94111111111111111')).to.equal('9************1111');
  });

  it('takes no 12-digit window from inside longer digits, only a 12-digit group as written', () => {
    expect(maskText('501800000009')).to.equal('********0009');
    expect(maskText('7501800000009')).to.equal('7501800000009');
  });

  it('leaves a Luhn-valid number of no brand untouched', () => {
    expect(maskText('1000000000000009')).to.equal('1000000000000009');
  });

  it('treats spaces and hyphens in any mix as separators', () => {
    expect(maskText('x 4111-1111 1111-1111 y')).to.equal('x ****-**** ****-1111 y');
  });

  it('joins groups across a double space but not across three spaces', () => {
    expect(maskText('4111 1111  1111 1111')).to.equal('**** ****  **** 1111');
    expect(maskText('4111 1111   1111 1111')).to.equal('4111 1111   1111 1111');
  });

  it('keeps the first six too with bin+last4', () => {
    expect(maskText('4111 1111 1111 1111', { keep: 'bin+last4' })).to.equal('4111 11** **** 1111');
    expect(maskText('5555555555554444', { keep: 'bin+last4' })).to.equal('555555******4444');
  });

  it('fills with zeros for numeric columns', () => {
    expect(maskText('4111111111111111', { fill: '0' })).to.equal('0000000000001111');
  });

  it('masks two adjacent PANs joined by a hyphen', () => {
    expect(maskText('4111111111111111-5555555555554444')).to.equal('************1111-************4444');
  });

  it('masks again what the kept digits of one PAN form with the groups after it', () => {
    // 4242424242424242 is a PAN; its last four plus the three groups after it are another.
    expect(maskText('4242424242424242 4242 4242 4242')).to.equal('**************** **** **** 4242');
  });

  it('recognises every brand of the IIN table', () => {
    const cards: Record<string, string> = {
      visa: '4012888888881881',
      mastercard: '5105105105105100',
      amex: '371449635398431',
      discover: '6011111111111117',
      jcb: '3530111333300000',
      diners: '36227206271667',
      unionpay: '6200000000000005',
      maestro: '6759649826438453',
    };
    for (const [brand, pan] of Object.entries(cards)) {
      expect(cardBrand(pan), pan).to.equal(brand);
      expect(maskText(pan), pan).to.equal('*'.repeat(pan.length - 4) + pan.slice(-4));
    }
  });

  it('isPan accepts one grouped PAN and nothing else', () => {
    expect(isPan('4111 1111 1111 1111')).to.equal(true);
    expect(isPan('4111-1111-1111-1111')).to.equal(true);
    expect(isPan('4111 1111 1111 1112')).to.equal(false);
    expect(isPan('x4111111111111111')).to.equal(false);
  });

  it('returns the very input when nothing is masked', () => {
    const b = Buffer.from('no cards here 123');
    expect(maskText(b)).to.equal(b);
  });

  it('passes invalid UTF-8 through untouched', () => {
    const input = Buffer.concat([Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(' 4111111111111111 '), Buffer.from([0x80, 0xed, 0xa0, 0x80])]);
    const expected = Buffer.concat([Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(' ************1111 '), Buffer.from([0x80, 0xed, 0xa0, 0x80])]);
    expect(maskText(input).equals(expected)).to.equal(true);
  });

  it('masks a slice in place without touching the rest', () => {
    const buf = Buffer.from('AAAA4111111111111111BBBB4111111111111111');
    expect(maskInPlace(buf, 4, 20)).to.equal(1);
    expect(buf.toString()).to.equal('AAAA************1111BBBB4111111111111111');
  });
});

describe('mask: streaming text', () => {
  it('masks a PAN cut between two reads at every possible point', () => {
    const input = Buffer.from('pay 4111 1111 1111 1111 now');
    for (let k = 0; k <= input.length; k++) {
      expect(streamed(input, [k]).toString(), `cut at ${k}`).to.equal('pay **** **** **** 1111 now');
    }
  });

  it('masks a PAN fed one byte at a time', () => {
    const input = Buffer.from('a5555-5555-5555-4444b');
    const cuts = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
    expect(streamed(input, cuts).toString()).to.equal('a****-****-****-4444b');
  });

  it('holds back only the unfinished run', () => {
    const m = createTextMasker();
    expect(m.write(Buffer.from('hello 4111 1111')).toString()).to.equal('hello ');
    expect(m.write(Buffer.from(' 1111 1111 bye')).toString()).to.equal('**** **** **** 1111 bye');
    expect(m.end().length).to.equal(0);
    expect(m.pansMasked).to.equal(1);
  });

  it('bounds the hold-back on an endless run of digit groups', () => {
    // The run never ends, yet output keeps flowing: what is held stays under one window.
    const m2 = createTextMasker();
    let out = 0;
    let inp = 0;
    for (let i = 0; i < 5000; i++) {
      const chunk = Buffer.from('12 34 56 78 ');
      inp += chunk.length;
      out += m2.write(chunk).length;
      expect(inp - out).to.be.at.most(RUN_WINDOW);
    }
    out += m2.end().length;
    expect(out).to.equal(inp);
  });

  it('masks a PAN in the middle of a run longer than the window', () => {
    const filler = '12 '.repeat(2000);
    const input = `${filler}4111 1111 1111 1111 ${filler}`;
    const out = maskText(input);
    expect(out).to.equal(`${filler}**** **** **** 1111 ${filler}`);
  });

  it('passes a digit group of any length untouched', () => {
    const long = '7'.repeat(5000);
    expect(maskText(`a ${long} 4111111111111111 b`)).to.equal(`a ${long} ************1111 b`);
  });
});
