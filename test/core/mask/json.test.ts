// JSON mode: structure-aware masking, card-data keys, value streams, fail-closed errors.

import { expect } from 'chai';
import { createJsonMasker, JsonMaskError, maskJson } from '../../../core/mask/index.js';

function chunked(input: string, size: number): string {
  const m = createJsonMasker();
  const buf = Buffer.from(input);
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(m.write(buf.subarray(i, i + size)));
  parts.push(m.end());
  return Buffer.concat(parts).toString();
}

describe('mask: JSON mode', () => {
  it('masks a PAN inside a string value in place', () => {
    expect(maskJson('{"note":"card 4111 1111 1111 1111 ok"}')).to.equal('{"note":"card **** **** **** 1111 ok"}');
  });

  it('turns a PAN written as a bare number into a masked string', () => {
    expect(maskJson('{"pan":4111111111111111}')).to.equal('{"pan":"************1111"}');
  });

  it('leaves ordinary numbers as numbers', () => {
    expect(maskJson('[0,-1.5e3,12345678901234567890,4111111111111112]')).to.equal('[0,-1.5e3,12345678901234567890,4111111111111112]');
  });

  it('masks PANs in keys', () => {
    expect(maskJson('{"4111111111111111":true}')).to.equal('{"************1111":true}');
  });

  it('stars the string value of a cvv key with the same length', () => {
    expect(maskJson('{"cvv":"123","name":"A"}')).to.equal('{"cvv":"***","name":"A"}');
  });

  it('matches card-data keys case-insensitively, ignoring _ and -', () => {
    expect(maskJson('{"Security_Code":"9876","TRACK-2":";4111111111111111=25121011000?","Pin":"0000"}')).to.equal(
      '{"Security_Code":"****","TRACK-2":"******************************","Pin":"****"}',
    );
  });

  it('turns a numeric cvv into a starred string of the same length', () => {
    expect(maskJson('{"cvc2":123}')).to.equal('{"cvc2":"***"}');
  });

  it('keeps null and booleans under a card-data key', () => {
    expect(maskJson('{"cvv":null,"pin":false}')).to.equal('{"cvv":null,"pin":false}');
  });

  it('stars every string and number inside an object or array under a card-data key', () => {
    expect(maskJson('{"trackData":{"t1":"B4111","t2":[1234,"x"]},"after":"4111111111111111"}')).to.equal(
      '{"trackData":{"t1":"*****","t2":["****","*"]},"after":"************1111"}',
    );
  });

  it('recognises a card-data key spelled with escapes', () => {
    expect(maskJson('{"\\u0043V\\u005fV":"123"}')).to.equal('{"\\u0043V\\u005fV":"***"}');
  });

  it('takes extra card-data keys from the caller', () => {
    expect(maskJson('{"iban":"DE89","cvv":"1"}', { cardFields: ['IBAN'] })).to.equal('{"iban":"****","cvv":"*"}');
  });

  it('decodes escaped digits so an escaped PAN is masked, and writes it out plainly', () => {
    expect(maskJson('{"s":"\\u0034111 1111\\u00201111 1111"}')).to.equal('{"s":"**** **** **** 1111"}');
  });

  it('keeps other escapes as they are; they end a digit run like any character', () => {
    expect(maskJson('["a\\n4111111111111111\\t\\u00e9\\"x"]')).to.equal('["a\\n************1111\\t\\u00e9\\"x"]');
  });

  it('handles a stream of values (NDJSON, watch events)', () => {
    const input = '{"type":"ADDED","object":{"data":{"pan":"5555555555554444"}}}\n{"type":"MODIFIED","object":{"cvv":"321"}}\n';
    expect(maskJson(input)).to.equal('{"type":"ADDED","object":{"data":{"pan":"************4444"}}}\n{"type":"MODIFIED","object":{"cvv":"***"}}\n');
  });

  it('gives the same output whatever the chunk size', () => {
    const input = '{"a":"x 4111 1111 1111 1111","b":[4111111111111111, 3.5, true, null],"cvv":"123","k\\u0034":"\\u00341111111111111111"}\n[1]';
    const whole = maskJson(input);
    for (let size = 1; size <= 17; size++) expect(chunked(input, size), `size ${size}`).to.equal(whole);
  });

  it('applies bin+last4', () => {
    expect(maskJson('{"p":"4111111111111111"}', { keep: 'bin+last4' })).to.equal('{"p":"411111******1111"}');
  });

  it('reports invalid JSON with line and byte, and releases nothing of the failed chunk', () => {
    const m = createJsonMasker();
    expect(m.write(Buffer.from('{"a":1}\n')).toString()).to.equal('{"a":1}\n');
    expect(() => m.write(Buffer.from('{"pan":"4111111111111111" "x"}'))).to.throw(JsonMaskError, "invalid JSON at line 2, byte 34: expected ',' or '}' in an object, found '\"'");
    expect(() => m.write(Buffer.from('{}'))).to.throw(JsonMaskError);
  });

  it('rejects truncated input at the end', () => {
    expect(() => maskJson('{"a":"4111')).to.throw(JsonMaskError, 'unexpected end of input inside a string');
  });

  it('rejects a number with a leading zero', () => {
    expect(() => maskJson('[0123]')).to.throw(JsonMaskError, "invalid number '0123'");
  });

  it('rejects an unescaped control character in a string', () => {
    expect(() => maskJson('"a\nb"')).to.throw(JsonMaskError, 'unescaped control character');
  });

  it('streams a huge string with bounded hold-back', () => {
    const m = createJsonMasker();
    let inp = 0;
    let out = m.write(Buffer.from('{"blob":"')).length;
    inp += 9;
    const chunk = Buffer.from('lorem 4111 1111 1111 1111 ipsum '.repeat(64));
    for (let i = 0; i < 500; i++) {
      inp += chunk.length;
      out += m.write(chunk).length;
      expect(inp - out).to.be.at.most(64);
    }
    out += m.write(Buffer.from('"}')).length + m.end().length;
    expect(out).to.equal(inp + 2);
  });
});

describe('mask: JSON mode across chunk boundaries', () => {
  it('ends an over-long digit group at the next character even when a chunk starts there', () => {
    const m = createJsonMasker();
    const a = m.write(Buffer.from(`["${'7'.repeat(25)}`));
    const b = m.write(Buffer.from('ab\\u0034111111111111111"]'));
    const out = Buffer.concat([a, b, m.end()]).toString();
    expect(out).to.equal(`["${'7'.repeat(25)}ab************1111"]`);
  });
});

describe('mask: JSON numbers and limits', () => {
  it('masks a top-level number PAN that ends the stream', () => {
    expect(maskJson('4111111111111111')).to.equal('"************1111"');
  });

  it('masks a number PAN cut between two chunks', () => {
    const m = createJsonMasker();
    const out = Buffer.concat([m.write(Buffer.from('[41111111')), m.write(Buffer.from('11111111]')), m.end()]).toString();
    expect(out).to.equal('["************1111"]');
  });

  it('refuses a number longer than MAX_NUMBER_BYTES instead of buffering it', () => {
    expect(() => maskJson(`[${'1'.repeat(5000)}]`)).to.throw(JsonMaskError, 'number longer than 4096 bytes');
  });

  it('refuses nesting deeper than MAX_DEPTH', () => {
    expect(() => maskJson('['.repeat(10001))).to.throw(JsonMaskError, 'nesting deeper than 10000');
  });
});
