// The type-driven value masker from byte fixtures, without a server: binary arrays
// and records, text literals, numbers, the plan's refusal of undecodable binary types.

import { expect } from 'chai';
import fc from 'fast-check';
import { maskBinaryValue, UnmaskableError } from '../../../sidecar/postgres/binary-values.js';
import { maskTextValue } from '../../../sidecar/postgres/text-values.js';
import { maskFloat, maskNumberDigits } from '../../../sidecar/postgres/number-mask.js';
import { BUILTIN_TYPES, MaskingCatalog, TypeCatalog, V, catalogFromRows } from '../../../sidecar/postgres/value-types.js';
import { maskDataRow, planRow } from '../../../sidecar/postgres/result-mask.js';
import { policyMasker } from '../../../sidecar/postgres/masker.js';
import type { Policy, PolicySource } from '../../../core/policy/types.js';
import { array1, el, int4, int8, numeric, record, text } from './wire-client.js';
import { luhnComplete } from '../../support/cards.js';

const source = { current: () => ({ masking: {} }) as unknown as Policy } as unknown as PolicySource;
const masker = policyMasker(source);
const node = (oid: number) => BUILTIN_TYPES.node(oid)!;

function maskBin(value: Buffer, oid: number, types: TypeCatalog = BUILTIN_TYPES): Buffer | null {
  const b = Buffer.from(value);
  const r = maskBinaryValue(b, 0, b.length, types.node(oid)!, false, types, masker);
  return r === undefined ? b : r;
}

describe('binary values', () => {
  it('keeps an int8 that holds no PAN byte for byte, and masks one that does', () => {
    expect(maskBin(int8(123456789012345n), 20)).to.deep.equal(int8(123456789012345n));
    expect(maskBin(int8(4111111111111111n), 20)).to.deep.equal(int8(1111n));
    expect(maskBin(int8(-4111111111111111n), 20)).to.deep.equal(int8(-1111n));
  });

  it('sets the has-nulls flag of an array whose starred element had to become NULL', () => {
    const types = new TypeCatalog(catalogFromRows([['90001', 'c', '0', '90000', '[[1082,1,"d"],[25,2,"x"]]', 'public', 't']], new Set(['90000:1'])).types);
    const row = record([[1082, int4(9000)], [25, text('x')]]);
    const b = Buffer.from(array1(90001, [row]));
    const r = maskBinaryValue(b, 0, b.length, { v: V.Array, oid: 90002, elem: types.node(90001), textAlways: true }, false, types, masker);
    // The starred date has no starred form: NULL.
    expect(r).to.deep.equal(Buffer.concat([int4(1), int4(0), int4(90001), int4(1), int4(1), el(record([[1082, null], [25, text('x')]]))]));
  });

  it('refuses a record field of a type it cannot decode', () => {
    const v = record([[3614, text('4111111111111111')]]);
    expect(() => maskBin(v, 2249)).to.throw(UnmaskableError, /OID 3614/);
  });

  it('refuses an array of a type it cannot decode', () => {
    expect(() => maskBin(array1(3614, [text('x')]), 1016)).to.throw(UnmaskableError, /OID 3614/);
  });

  it('refuses a truncated array rather than forwarding it', () => {
    const v = array1(20, [int8(1n)]);
    expect(() => maskBin(v.subarray(0, v.length - 2), 1016)).to.throw(UnmaskableError, /truncated/);
  });

  it('follows a domain over int8 inside a record (records carry the domain OID)', () => {
    const types = new TypeCatalog(catalogFromRows([['90010', 'd', '20', '0', null, 'public', null]], new Set()).types);
    expect(maskBin(record([[90010, int8(4111111111111111n)]]), 2249, types)).to.deep.equal(record([[90010, int8(1111n)]]));
  });

  it('masks numeric with a fraction: the PAN in the integer part, the scale kept', () => {
    // 4111111111111111.25: weight 3, digits 4111 1111 1111 1111 2500, dscale 2.
    expect(maskBin(numeric(3, [4111, 1111, 1111, 1111, 2500], 2), 1700)).to.deep.equal(numeric(0, [1111, 2500], 2));
  });
});

describe('number masking', () => {
  it('finds a PAN in the integer part followed by cents', () => {
    expect(maskNumberDigits('4111111111111111', '00', masker)).to.deep.equal(['0000000000001111', '00']);
  });

  it('finds a PAN spread over the integer part and the fraction', () => {
    expect(maskNumberDigits('41111111111111', '11', masker)).to.deep.equal(['00000000000011', '11']);
  });

  it('masks a float8 holding any Luhn-valid PAN of 15 or 16 digits (seeded)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9]{14}$/), (body) => {
        const pan = luhnComplete('4' + body);
        const m = maskFloat(Number(pan), masker);
        expect(m, pan).to.equal(Number(pan.slice(-4)));
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});

describe('text literals', () => {
  it('masks each element of an int8[] literal as a number and keeps NULL', () => {
    expect(maskTextValue('{4111111111111111,NULL,"42"}', node(1016), false, masker)).to.equal('{0000000000001111,NULL,"42"}');
  });

  it('keeps a quoted "NULL" string element quoted (it is not NULL)', () => {
    expect(maskTextValue('{"NULL","4111111111111111"}', node(1009), false, masker)).to.equal('{"NULL","************1111"}');
  });

  it('stars the starred field of a table row literal and re-quotes JSON inside it', () => {
    const types = new TypeCatalog(catalogFromRows([['90020', 'c', '0', '90019', '[[23,1,"id"],[25,2,"cvv"],[114,3,"doc"]]', 'public', 't']], new Set(['90019:2'])).types);
    expect(maskTextValue('(1,"a b","{""cvv"": ""9"", ""n"": 4111111111111111}")', types.node(90020), false, masker)).to.equal(
      '(1,***,"{""cvv"": ""*"", ""n"": ""************1111""}")',
    );
  });

  it('reads a bytea hex literal as bytes', () => {
    expect(maskTextValue('\\x' + Buffer.from('4111111111111111').toString('hex'), node(17), false, masker)).to.equal('\\x' + Buffer.from('************1111').toString('hex'));
  });
});

describe('row plans', () => {
  it('marks a binary column of an unknown type unmaskable, and maskDataRow refuses the row', () => {
    const plan = planRow([{ tableOid: 0, column: 0, typeOid: 3614, format: 1 }], undefined, new Set());
    expect(plan.unmaskable).to.match(/OID 3614.*use text format/);
    const row = Buffer.concat([Buffer.from('D'), int4(4 + 2 + 4 + 3), Buffer.from([0, 1]), int4(3), text('abc')]);
    expect(() => maskDataRow(row, 0, row.length, plan, masker)).to.throw(UnmaskableError);
  });

  it('plans a text column of an unknown type as text (scanned), not unmaskable', () => {
    expect(planRow([{ tableOid: 0, column: 0, typeOid: 3614, format: 0 }], undefined, new Set()).unmaskable).to.equal(undefined);
  });

  it('stars result columns marked as derived from a starred column', () => {
    const plan = planRow([{ tableOid: 0, column: 0, typeOid: 25, format: 0 }], undefined, new MaskingCatalog([], BUILTIN_TYPES), [true]);
    const row = Buffer.concat([Buffer.from('D'), int4(4 + 2 + 4 + 3), Buffer.from([0, 1]), int4(3), text('123')]);
    const out = maskDataRow(row, 0, row.length, plan, masker) ?? row;
    expect(out.subarray(11).toString()).to.equal('***');
  });
});
