// Binary results decoded for masking, against a real PostgreSQL 15 through the real
// sidecar: arrays and records of every type, float8, money, numeric; a binary value
// the proxy cannot decode never reaches the client. Text results of the same values
// for comparison. The policy stars public.cards.cvv (test/sidecar/postgres/harness.ts).

import { expect } from 'chai';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { WireClient, array1, dataRows, el, errorFields, float8, int4, int8, numeric, record, text } from './wire-client.js';

describe('PostgreSQL proxy: binary results are decoded and masked (real cluster)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: WireClient;

  before(async () => {
    h = await startHarness();
    await h.startProxy();
  });
  after(async () => {
    await h?.stop();
  });
  beforeEach(async () => {
    c = await WireClient.connect(h.proxyPort);
  });
  afterEach(() => c.end());

  async function binaryRow(sql: string): Promise<(Buffer | null)[]> {
    const frames = await c.extended(sql, true);
    const errors = frames.filter((f) => f.type === 'E').map((f) => errorFields(f).M);
    expect(errors).to.deep.equal([]);
    const rows = dataRows(frames);
    expect(rows).to.have.length(1);
    return rows[0];
  }

  it('masks an int8[] with a NULL element, keeping the NULL and the other elements', async () => {
    const [v] = await binaryRow('select array[pan_int8, null, 42::int8] from cards where id = 1');
    expect(v).to.deep.equal(array1(20, [int8(1111n), null, int8(42n)]));
  });

  it('masks a two-dimensional numeric[] element by element, each keeping its scale', async () => {
    const [v] = await binaryRow('select array[[pan_num, 1.5], [null, 5555555555554444.00]] from cards where id = 1');
    const expected = Buffer.concat([
      int4(2), int4(1), int4(1700), int4(2), int4(1), int4(2), int4(1),
      el(numeric(0, [1111])), el(numeric(0, [1, 5000], 1)), el(null), el(numeric(0, [4444], 2)),
    ]);
    expect(v).to.deep.equal(expected);
  });

  it('masks a PAN held in float8 and money: the masked number keeps the last four digits', async () => {
    const [f, m, small] = await binaryRow('select pan_int8::float8, pan_int8::money, 4.111111111111111e-7::float8 from cards where id = 1');
    expect(f).to.deep.equal(float8(1111));
    // money counts cents: $4,111,111,111,111,111.00 becomes $1,111.00.
    expect(m).to.deep.equal(int8(111100n));
    // The PAN's digits in a float's mantissa are masked too (the exponent stays).
    expect(small).to.deep.equal(float8(1.111e-19));
  });

  it('masks every field of a table row (record): PANs in text, numeric, int8, json and jsonb, the starred cvv field starred', async () => {
    const [v] = await binaryRow('select c from cards c where id = 1');
    expect(v).to.deep.equal(
      record([
        [23, int4(1)],
        [25, text('Ada')],
        [25, text('**** **** **** 1111')],
        [1700, numeric(0, [1111])],
        [20, int8(1111n)],
        [25, text('***')],
        [114, text('{"pan":"************4444","cvv":"***"}')],
        [3802, Buffer.concat([Buffer.from([1]), text('{"card": {"number": "************1881"}}')])],
      ]),
    );
  });

  it('masks an anonymous record nested in an array (record[] of records), recursively', async () => {
    const [v] = await binaryRow(`select array[row(pan_int8, row(pan, '{"cvv": 1}'::jsonb))] from cards where id = 1`);
    const inner = record([
      [25, text('**** **** **** 1111')],
      [3802, Buffer.concat([Buffer.from([1]), text('{"cvv": "*"}')])],
    ]);
    expect(v).to.deep.equal(array1(2249, [record([[20, int8(1111n)], [2249, inner]])]));
  });

  it('stars the cvv field in an array of table rows', async () => {
    const [v] = await binaryRow('select array_agg(c order by id) from cards c');
    const s = v!.toString('latin1');
    expect(s).to.not.include('123');
    expect(s).to.not.include('456');
    expect(s).to.not.include('4111 1111 1111 1111');
  });

  it('refuses a binary column of a type it cannot decode, naming the type and saying to use text format; no byte of it reaches the client', async () => {
    const frames = await c.extended("select to_tsvector('simple', 'card 4111111111111111')", true);
    expect(frames.some((f) => f.body.includes('4111111111111111'))).to.equal(false);
    const err = frames.find((f) => f.type === 'E');
    expect(err, frames.map((f) => f.type).join()).to.not.equal(undefined);
    expect(errorFields(err!).M).to.match(/type .*3614.*binary format; use text format/);
  });

  it('masks the same values in text format: grouped money digits, float8 exponent notation, records with their json quoted inside', async () => {
    const frames = await c.simple('select pan_int8::money, pan_int8::float8, c from cards c where id = 1');
    const [row] = dataRows(frames);
    expect(row.map((v) => v?.toString())).to.deep.equal([
      '$0,000,000,000,001,111.00',
      '1111',
      '(1,Ada,"**** **** **** 1111",0000000000001111,0000000000001111,***,"{""pan"":""************4444"",""cvv"":""***""}","{""card"": {""number"": ""************1881""}}")',
    ]);
  });

  it('masks int8[] and numeric[] text elements as numbers (zeros, so drivers still parse them)', async () => {
    const frames = await c.simple('select array[pan_int8, null], array[pan_num * 100 / 100] from cards where id = 1');
    expect(dataRows(frames)[0].map((v) => v?.toString())).to.deep.equal(['{0000000000001111,NULL}', '{0000000000001111.0000}']);
  });
});
