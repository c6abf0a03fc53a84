import { expect } from 'chai';
import { canonicalJson } from '../../../core/audit/canonical.js';

describe('audit canonical JSON (RFC 8785)', () => {
  it('sorts object members by UTF-16 code units, as RFC 8785 §3.2.3 shows', () => {
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    const keys = Object.keys(JSON.parse(canonicalJson(input)) as object);
    // JSON.parse puts the integer-like key first; compare the order in the text instead.
    const text = canonicalJson(input);
    const order = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'].map((k) => text.indexOf(JSON.stringify(k)));
    expect(order).to.deep.equal([...order].sort((a, b) => a - b));
    expect(keys).to.have.length(7);
  });

  it('writes numbers in the ECMAScript form of RFC 8785 §3.2.2.3', () => {
    expect(canonicalJson([0, -0, 1e21, 1e-7, 0.1, 333333333.3333333, 4.5e-324, 1.7976931348623157e308])).to.equal(
      '[0,0,1e+21,1e-7,0.1,333333333.3333333,5e-324,1.7976931348623157e+308]',
    );
  });

  it('has no whitespace and escapes strings like JSON.stringify', () => {
    expect(canonicalJson({ b: [1, { d: 'x\ny"\u0001' }], a: null })).to.equal('{"a":null,"b":[1,{"d":"x\\ny\\"\\u0001"}]}');
  });

  it('gives the same text for the same value built in any key order', () => {
    expect(canonicalJson({ seq: 1, prevHash: 'p', user: { username: 'u', groups: ['g'] } })).to.equal(
      canonicalJson({ user: { groups: ['g'], username: 'u' }, prevHash: 'p', seq: 1 }),
    );
  });

  it('reduces non-JSON values the way the written line does, so a parsed line hashes the same', () => {
    const value = { when: new Date(0), gone: undefined, nan: NaN, list: [undefined, () => 1, 2] };
    expect(canonicalJson(value)).to.equal('{"list":[null,null,2],"nan":null,"when":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson(JSON.parse(JSON.stringify(value)))).to.equal(canonicalJson(value));
  });

  it('refuses a BigInt, which is not JSON data', () => {
    expect(() => canonicalJson({ n: 1n })).to.throw(TypeError, 'canonicalJson: a BigInt is not JSON data');
  });
});
