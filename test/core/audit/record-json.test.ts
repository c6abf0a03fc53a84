import { expect } from 'chai';
import fc from 'fast-check';
import { RecordJson } from '../../../core/audit/record-json.js';
import { createMasker } from '../../../core/audit/masker.js';
import { canonicalBody, GENESIS_HASH } from '../../../core/audit/chain.js';
import { canonicalJson } from '../../../core/audit/canonical.js';
import { maskValue } from '../../../core/mask/index.js';
import { event } from './fixture.js';

const PREV = 'ab'.repeat(32);
const masked = () => new RecordJson(createMasker());

/** What the general path hashes: maskValue's copy, canonicalized (the writer before the single walk). */
const general = (ev: object, seq = 7, prevHash = PREV) => canonicalBody(maskValue(ev), seq, prevHash);

// Strings and keys that exercise every masking rule and every escaping rule.
const panText = fc.constantFrom('4111 1111 1111 1111', 'pan=5555555555554444;', 'card-378282246310005', '4111-1111-1111-1111 and 6011111111111117', '2026-11-23T12:00:00.000Z', '000000000012', '1234 5678 9012 3456');
const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), panText);
const key = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('cvv', 'Security_Code', 'PIN', 'track-2', 'pan', 'name', 'a', 'b', 'seq', 'hash', 'prevHash')).filter((k) => k !== '__proto__');
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    text,
    fc.double(),
    fc.integer(),
    fc.constantFrom(5555555555554444, 4111111111111111, 378282246310005, 0.4111111111111111, null, true, false, undefined),
    tie('array'),
    tie('object'),
  ),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(key, tie('value'), { maxKeys: 5 }),
}));
const eventLike = fc.dictionary(key, value, { maxKeys: 8 });

describe('audit record JSON (the single serializing walk)', () => {
  it('gives exactly the canonical JSON of the masked record that the general path gives, for any event', () => {
    const j = masked();
    fc.assert(
      fc.property(eventLike, fc.nat(), (ev, seq) => {
        const open = j.recordOpen(ev, seq + 1, PREV);
        if (open === undefined) return; // the general path will write it
        expect(`${open}}`).to.equal(general(ev, seq + 1));
      }),
      { numRuns: 1000 },
    );
  });

  it('without a masker gives exactly canonicalJson of the record, for any event', () => {
    const j = new RecordJson(undefined);
    fc.assert(
      fc.property(eventLike, (ev) => {
        expect(`${j.recordOpen(ev, 1, GENESIS_HASH)}}`).to.equal(canonicalBody(ev, 1, GENESIS_HASH));
      }),
      { numRuns: 500 },
    );
  });

  it('reports an all-ASCII record only when its UTF-8 length is its length', () => {
    const j = masked();
    fc.assert(
      fc.property(eventLike, (ev) => {
        const open = j.recordOpen(ev, 1, PREV);
        if (open !== undefined && j.ascii) expect(Buffer.byteLength(open)).to.equal(open.length);
      }),
      { numRuns: 500 },
    );
    expect(j.recordOpen({ name: 'Zoë' }, 1, PREV)).to.equal(`{"name":"Zoë","prevHash":"${PREV}","seq":1`);
    expect(j.ascii).to.equal(false);
  });

  it('masks PANs in strings and bare numbers, and stars card-data fields at any depth, in one walk', () => {
    const j = masked();
    const ev = event(1, {
      statement: "select * from cards where pan = '4111 1111 1111 1111'",
      requestObject: { payment: { number: 5555555555554444, CVV: '123', pin: 4321, items: [{ track_2: ';4111111111111111=25121010000000000000?' }] } },
    });
    const open = j.recordOpen(ev, 1, GENESIS_HASH);
    expect(open).to.not.equal(undefined);
    const rec = JSON.parse(`${open}}`) as { statement: string; requestObject: unknown };
    expect(rec.statement).to.equal("select * from cards where pan = '**** **** **** 1111'");
    expect(rec.requestObject).to.deep.equal({ payment: { number: '************4444', CVV: '***', pin: '****', items: [{ track_2: '*'.repeat(39) }] } });
    expect(j.pans).to.equal(2);
  });

  it('leaves the caller\'s event as it was', () => {
    const ev = event(1, { statement: "where pan = '4111111111111111'", requestObject: { cvv: '123' } });
    const copy = structuredClone(ev);
    masked().recordOpen(ev, 1, GENESIS_HASH);
    expect(ev).to.deep.equal(copy);
  });

  it('hands to the general path what it does not model: a key a PAN scan changes, Date, binary data, BigInt', () => {
    const j = masked();
    expect(j.recordOpen({ labels: { '4111111111111111': 'x' } }, 1, PREV)).to.equal(undefined);
    expect(j.recordOpen({ when: new Date(0) }, 1, PREV)).to.equal(undefined);
    expect(j.recordOpen({ body: Buffer.from('x') }, 1, PREV)).to.equal(undefined);
    expect(j.recordOpen({ n: 1n }, 1, PREV)).to.equal(undefined);
    // …which masks and canonicalizes them as before.
    expect(general({ labels: { '4111111111111111': 'x' } }, 1)).to.equal(canonicalJson({ labels: { '************1111': 'x' }, prevHash: PREV, seq: 1 }));
  });

  it('lets seq and prevHash of the chain win over fields of the same name in the event, and leaves hash out', () => {
    const open = masked().recordOpen({ seq: 99, prevHash: 'x', hash: 'y', a: 1 }, 3, PREV);
    expect(open).to.equal(`{"a":1,"prevHash":"${PREV}","seq":3`);
  });
});
