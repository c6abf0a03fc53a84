// The masking property, against a real PostgreSQL 15 through the real sidecar: a table
// with a column of every type that can hold a PAN (text, varchar, int8, numeric, float8,
// money, bytea, json, jsonb, arrays, a composite, the row itself) filled with seeded
// Luhn-valid PANs; read through the simple query, extended text and binary, cursors
// (text and binary) and COPY text, CSV and binary. The bytes that reach the client,
// decoded as a driver decodes them, hold no full PAN: not even in their digits alone.

import { expect } from 'chai';
import fc from 'fast-check';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { WireClient, errorFields, rowValues } from './wire-client.js';
import type { BackendFrame } from './wire-client.js';
import { luhnComplete } from '../../support/cards.js';

/** Visa 16, Mastercard 16, Amex 15: all below 2^53, so float8 holds them exactly. */
const panArb = fc.oneof(
  fc.stringMatching(/^[0-9]{14}$/).map((b) => luhnComplete('4' + b)),
  fc.tuple(fc.integer({ min: 51, max: 55 }), fc.stringMatching(/^[0-9]{13}$/)).map(([p, b]) => luhnComplete(String(p) + b)),
  fc.tuple(fc.constantFrom('34', '37'), fc.stringMatching(/^[0-9]{12}$/)).map(([p, b]) => luhnComplete(p + b)),
);
const PANS = [...new Set(fc.sample(panArb, { seed: 20261201, numRuns: 6 }))];

const COLUMNS = 'id, t, g, i4, i8, n, n2, f, m, b, j, jb, ai, at, an, ct';
const SELECT = `select ${COLUMNS}, p as whole from pans p order by id`;
// Binary COPY has no type per field: the driver knows the table's.
const COPY_TYPES = [23, 25, 1043, 23, 20, 1700, 1700, 701, 790, 17, 114, 3802, 1016, 1009, 1231, -1];

// --- decoding as a driver does ----------------------------------------------------------

function decodeNumeric(b: Buffer): string {
  const n = b.readInt16BE(0);
  const weight = b.readInt16BE(2);
  const sign = b.readUInt16BE(4);
  if (sign === 0xc000) return 'NaN';
  let int = '';
  let frac = '';
  for (let i = 0; i < n; i++) {
    const d = String(b.readInt16BE(8 + i * 2)).padStart(4, '0');
    if (i <= weight) int += d;
    else frac += d;
  }
  for (let i = n; i <= weight; i++) int += '0000';
  if (weight < -1) frac = '0000'.repeat(-weight - 1) + frac;
  return (sign === 0x4000 ? '-' : '') + (int.replace(/^0+/, '') || '0') + (frac ? '.' + frac : '');
}

/** A binary value as the text a driver would produce; unknown OIDs are this table's composites (records). */
function decodeBinary(oid: number, b: Buffer): string {
  switch (oid) {
    case 23:
      return String(b.readInt32BE(0));
    case 20:
      return b.readBigInt64BE(0).toString();
    case 701:
      return String(b.readDoubleBE(0));
    case 1700:
      return decodeNumeric(b);
    case 790: {
      const cents = b.readBigInt64BE(0);
      return `${cents / 100n}.${String(cents % 100n).padStart(2, '0')}`;
    }
    case 25:
    case 1043:
    case 114:
      return b.toString('utf8');
    case 3802:
      return b.toString('utf8', 1);
    case 17:
      return b.toString('latin1');
    case 1016:
    case 1009:
    case 1231:
    case 2287: {
      const ndim = b.readInt32BE(0);
      const elem = b.readUInt32BE(8);
      let p = 12 + ndim * 8;
      const out: string[] = [];
      while (p < b.length) {
        const len = b.readInt32BE(p);
        p += 4;
        if (len < 0) out.push('NULL');
        else {
          out.push(decodeBinary(elem, b.subarray(p, p + len)));
          p += len;
        }
      }
      return `{${out.join(',')}}`;
    }
    default: {
      const n = b.readInt32BE(0);
      let p = 4;
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        const foid = b.readUInt32BE(p);
        const len = b.readInt32BE(p + 4);
        p += 8;
        if (len < 0) out.push('');
        else {
          out.push(decodeBinary(foid, b.subarray(p, p + len)));
          p += len;
        }
      }
      return `(${out.join(',')})`;
    }
  }
}

/** The rows' values as text: binary columns decoded by the RowDescription's types and formats. */
function decodeResult(frames: BackendFrame[]): string {
  let types: { oid: number; format: number }[] = [];
  const out: string[] = [];
  for (const f of frames) {
    if (f.type === 'T') {
      types = [];
      let p = 2;
      for (let i = 0; i < f.body.readInt16BE(0); i++) {
        p = f.body.indexOf(0, p) + 1;
        types.push({ oid: f.body.readUInt32BE(p + 6), format: f.body.readInt16BE(p + 16) });
        p += 18;
      }
    } else if (f.type === 'D') {
      rowValues(f.body).forEach((v, i) => {
        if (v !== null) out.push(types[i]?.format === 1 ? decodeBinary(types[i].oid, v) : v.toString('utf8'));
      });
    }
  }
  return out.join('\u0001');
}

function decodeBinaryCopy(data: Buffer): string {
  let p = 19 + data.readInt32BE(15);
  const out: string[] = [];
  for (;;) {
    const n = data.readInt16BE(p);
    p += 2;
    if (n === -1) break;
    for (let i = 0; i < n; i++) {
      const len = data.readInt32BE(p);
      p += 4;
      if (len < 0) continue;
      out.push(decodeBinary(COPY_TYPES[i], data.subarray(p, p + len)));
      p += len;
    }
  }
  return out.join('\u0001');
}

function expectNoPan(decoded: string, path: string): void {
  expect(decoded.length, `${path}: nothing came back`).to.be.greaterThan(PANS.length * 10);
  // Values are checked one by one, digits alone: separators, currency signs and JSON quoting do not hide a PAN.
  for (const v of decoded.split('\u0001')) {
    const digits = v.replace(/[^0-9]/g, '');
    for (const pan of PANS) expect(digits.includes(pan), `${path}: ${pan} in ${v}`).to.equal(false);
  }
}

describe('PostgreSQL proxy: no full PAN reaches the client, whatever the type and the path (real cluster, seeded)', function () {
  this.timeout(120_000);
  let h: Harness;
  let c: WireClient;

  before(async () => {
    h = await startHarness();
    const rows = PANS.map((p, i) => {
      const g = p.replace(/(\d{4})(?=\d)/g, '$1 ');
      return `(${i + 1}, '${p}', '${g}', 1, ${p}, ${p}, ${p}.00, ${p}, ${p}, convert_to('card ${p}', 'UTF8'), '{"card": "${p}", "num": ${p}}', '{"card": {"n": ${p}}}', array[${p}::int8, null], array['${g}', 'x'], array[${p}::numeric], row(${p}, 'pan ${p}'))`;
    });
    // Created before the sidecar starts, so the catalogue it reads at connection start has the composite types.
    await h.cluster.sql(
      `set role agent_rw;
       create type card_t as (pan int8, note text);
       create table pans(id int, t text, g varchar(40), i4 int4, i8 int8, n numeric, n2 numeric(22,2), f float8, m money, b bytea, j json, jb jsonb, ai int8[], at text[], an numeric[], ct card_t);
       insert into pans values ${rows.join(',\n')};`,
      'payments',
    );
    await h.startProxy();
  });
  after(async () => {
    await h?.stop();
  });
  beforeEach(async () => {
    c = await WireClient.connect(h.proxyPort);
  });
  afterEach(() => c.end());

  const noErrors = (frames: BackendFrame[]) => expect(frames.filter((f) => f.type === 'E').map((f) => errorFields(f).M)).to.deep.equal([]);

  it('holds for the simple query protocol (text)', async () => {
    const frames = await c.simple(SELECT);
    noErrors(frames);
    expectNoPan(decodeResult(frames), 'simple');
  });

  it('holds for the extended protocol, text results', async () => {
    const frames = await c.extended(SELECT, false);
    noErrors(frames);
    expectNoPan(decodeResult(frames), 'extended text');
  });

  it('holds for the extended protocol, binary results', async () => {
    const frames = await c.extended(SELECT, true);
    noErrors(frames);
    expectNoPan(decodeResult(frames), 'extended binary');
  });

  it('holds for a cursor fetched in text and a binary cursor', async () => {
    for (const binary of [false, true]) {
      const frames = await c.simple(`begin; declare k ${binary ? 'binary ' : ''}cursor for ${SELECT}; fetch all from k; commit`);
      noErrors(frames);
      expectNoPan(decodeResult(frames), binary ? 'binary cursor' : 'cursor');
    }
  });

  it('holds for COPY TO STDOUT in text, CSV and binary format', async () => {
    for (const format of ['text', 'csv']) {
      const frames = await c.simple(`copy pans(${COLUMNS}) to stdout (format ${format})`);
      noErrors(frames);
      const sep = format === 'csv' ? ',' : '\t';
      expectNoPan(frames.filter((f) => f.type === 'd').flatMap((f) => f.body.toString('utf8').split(sep)).join('\u0001'), `copy ${format}`);
    }
    const frames = await c.simple(`copy pans(${COLUMNS}) to stdout (format binary)`);
    noErrors(frames);
    expectNoPan(decodeBinaryCopy(Buffer.concat(frames.filter((f) => f.type === 'd').map((f) => f.body))), 'copy binary');
  });
});
