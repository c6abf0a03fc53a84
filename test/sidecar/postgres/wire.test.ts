// The pieces of the proxy that need no server: framing across arbitrary chunk
// boundaries, the byte pre-filter, binary numeric coding, SCRAM (RFC 7677 vector).

import { expect } from 'chai';
import fc from 'fast-check';
import crypto from 'node:crypto';
import { FrameReader, ProtocolError, isFrontendType, queryMessage, message } from '../../../sidecar/postgres/wire.js';
import { mayHoldPan, decodeNumeric, encodeNumeric, maskDataRow, planRow } from '../../../sidecar/postgres/result-mask.js';
import type { TextMasker } from '../../../sidecar/postgres/result-mask.js';
import { ScramClient, md5Password } from '../../../sidecar/postgres/scram.js';
import { maskText, maskJson, maskInPlace } from '../../../core/mask/index.js';

const masker: TextMasker = {
  maskText: (t, fill) => maskText(t, fill === '0' ? { fill: '0' } : {}),
  maskJson: (t) => maskJson(t),
  maskInPlace: (b, s, e, fill) => maskInPlace(b, s, e, fill === '0' ? { fill: '0' } : {}),
};

function frames(chunks: Buffer[], max = 1 << 20): string[] {
  const r = new FrameReader(max, isFrontendType);
  const out: string[] = [];
  for (const c of chunks) r.push(c, (type, buf, start, end) => out.push(`${String.fromCharCode(type)}:${buf.toString('utf8', start + 5, end)}`));
  return out;
}

describe('FrameReader', () => {
  it('yields the same frames however the stream is cut', () => {
    const stream = Buffer.concat([queryMessage('select 1'), queryMessage(''), queryMessage('x'.repeat(3000)), message(0x53, Buffer.alloc(0))]);
    const whole = frames([stream]);
    expect(whole).to.have.length(4);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(stream.subarray(prev, p));
          prev = p;
        }
        chunks.push(stream.subarray(prev));
        expect(frames(chunks)).to.deep.equal(whole);
      }),
    );
  });

  it('reads a stream fed one byte at a time', () => {
    const stream = Buffer.concat([queryMessage('select 1'), queryMessage('select 2')]);
    expect(frames([...stream].map((b) => Buffer.from([b])))).to.deep.equal(['Q:select 1\0', 'Q:select 2\0']);
  });

  it('refuses an unknown frontend message type', () => {
    expect(() => frames([Buffer.from([0x01, 0, 0, 0, 4])])).to.throw(ProtocolError, 'invalid message type 0x01');
  });

  it('refuses a length below 4 and a length above the limit before buffering the body', () => {
    expect(() => frames([Buffer.from([0x51, 0, 0, 0, 3])])).to.throw(ProtocolError, 'invalid message length 3');
    expect(() => frames([Buffer.from([0x51, 0x10, 0, 0, 0])], 1024)).to.throw(ProtocolError, 'message of 268435456 bytes exceeds the limit of 1024');
  });
});

describe('PAN pre-filter', () => {
  it('passes runs of 12 or more digits, grouped or not', () => {
    for (const s of ['4111111111111111', '4111 1111 1111 1111', '4111-1111-1111-1111', 'x 123456789012 y']) expect(mayHoldPan(Buffer.from(s), 0, s.length), s).to.equal(true);
  });
  it('skips values that cannot hold a PAN', () => {
    for (const s of ['12345', '2024-01-01 12:00:00', 'item 1000', '12345678901', '1234 abc 5678 def 9012']) expect(mayHoldPan(Buffer.from(s), 0, s.length), s).to.equal(false);
  });
  it('never skips a string the masker would change', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9 \-a-z.]{0,40}$/), (s) => {
        if (maskText(s) !== s) expect(mayHoldPan(Buffer.from(s), 0, Buffer.byteLength(s))).to.equal(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('binary numeric', () => {
  it('round-trips values through decode and encode', () => {
    for (const v of ['0', '42', '-17', '4111111111111111', '12345.6789', '0.0001', '100000000', '-0.5']) {
      const dscale = v.includes('.') ? v.split('.')[1].length : 0;
      expect(decodeNumeric(encodeNumeric(v, dscale), 0, encodeNumeric(v, dscale).length), v).to.equal(v);
    }
  });
});

describe('DataRow masking', () => {
  const row = (values: (string | null)[]) => {
    const parts = values.map((v) => {
      if (v === null) return Buffer.from([0xff, 0xff, 0xff, 0xff]);
      const b = Buffer.alloc(4);
      b.writeInt32BE(Buffer.byteLength(v));
      return Buffer.concat([b, Buffer.from(v)]);
    });
    const n = Buffer.alloc(2);
    n.writeInt16BE(values.length);
    return message(0x44, Buffer.concat([n, ...parts]));
  };
  const text = (typeOid: number) => ({ tableOid: 0, column: 0, typeOid, format: 0 });

  it('returns undefined (forward as is) for a row without a PAN', () => {
    const m = row(['1', 'no card', null]);
    expect(maskDataRow(m, 0, m.length, planRow([text(23), text(25), text(25)], undefined, new Set()), masker)).to.equal(undefined);
  });

  it('masks text values in place, NULLs kept, so the frame is forwarded as it is', () => {
    const m = row(['4111111111111111', null, '4111 1111 1111 1111']);
    expect(maskDataRow(m, 0, m.length, planRow([text(1700), text(25), text(25)], undefined, new Set()), masker)).to.equal(undefined);
    expect(m.equals(row(['0000000000001111', null, '**** **** **** 1111']))).to.equal(true);
  });

  it('rebuilds the row when a JSON value changes length', () => {
    const m = row(['{"n":4111111111111111}', '4111111111111111']);
    const out = maskDataRow(m, 0, m.length, planRow([text(114), text(25)], undefined, new Set()), masker)!;
    expect(out.equals(row(['{"n":"************1111"}', '************1111']))).to.equal(true);
  });

  it('stars starred columns whole, matched by table OID and column number', () => {
    const m = row(['123', 'abc']);
    const cols = [{ tableOid: 99, column: 4, typeOid: 25, format: 0 }, { tableOid: 99, column: 5, typeOid: 25, format: 0 }];
    expect(maskDataRow(m, 0, m.length, planRow(cols, undefined, new Set(['99:4'])), masker)!.equals(row(['***', 'abc']))).to.equal(true);
  });
});

describe('SCRAM-SHA-256 client', () => {
  it('computes the RFC 7677 client proof and accepts the server signature', () => {
    // RFC 7677 §3 uses user "user" in the exchange; PostgreSQL sends an empty name, so
    // the vector is replayed with the client-first-bare the RFC used.
    const c = new ScramClient('pencil') as unknown as { clientNonce: string; clientFirstBare: string; clientFinal(s: string): string; verifyServerFinal(s: string): void };
    Object.defineProperty(c, 'clientNonce', { value: 'rOprNGfwEbeRWgbNEkqO' });
    Object.defineProperty(c, 'clientFirstBare', { value: 'n=user,r=rOprNGfwEbeRWgbNEkqO' });
    const final = c.clientFinal('r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
    expect(final).to.equal('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
    c.verifyServerFinal('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
    expect(() => c.verifyServerFinal('v=' + crypto.randomBytes(32).toString('base64'))).to.throw(/server signature does not match/);
  });

  it('refuses a server nonce that does not extend the client nonce', () => {
    const c = new ScramClient('pencil');
    expect(() => c.clientFinal('r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).to.throw(/does not extend/);
  });

  it('computes PostgreSQL MD5 responses', () => {
    // md5(md5('secret' + 'alice') + salt), as libpq does it.
    const inner = crypto.createHash('md5').update('secretalice').digest('hex');
    const salt = Buffer.from([1, 2, 3, 4]);
    const want = 'md5' + crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
    expect(md5Password('alice', 'secret', salt)).to.equal(want);
  });
});
