// Masking that the client cannot switch off by leaving out Describe: the proxy knows
// the shape of every result it forwards, asking the server itself when the client did
// not (Parse/Bind/Execute/Sync), and keeps that answer from the client. Raw protocol
// messages against a real cluster.

import { expect } from 'chai';
import { serialize } from 'pg-protocol';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { RawClient, names, errorsOf, rowsOf } from './raw-client.js';

/** Binary fields arrive from pg-protocol as latin1 strings. */
const bytes = (s: string | null): Buffer => Buffer.from(s ?? '', 'latin1');

describe('PostgreSQL proxy: results the client did not Describe are masked (real cluster)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;

  before(async () => {
    h = await startHarness();
    await h.startProxy();
  });
  after(async () => {
    await h?.stop();
  });
  beforeEach(async () => {
    c = await RawClient.connect(h.proxyPort);
  });
  afterEach(() => c.end());

  it('masks text results of Parse/Bind/Execute/Sync: int8, numeric, bytea, jsonb, and stars masking.columns', async () => {
    const [got] = await c.batch([
      serialize.parse({ text: "select pan_int8, pan_num, convert_to(pan, 'UTF8') as b, docb, cvv, doc from cards where id = 1" }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    ]);
    // The proxy's own Describe and its answer stay between the proxy and the server.
    expect(names(got)).to.deep.equal(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect(rowsOf(got)).to.deep.equal([
      [
        '0000000000001111',
        '0000000000001111',
        `\\x${Buffer.from('**** **** **** 1111').toString('hex')}`,
        '{"card": {"number": "************1881"}}',
        '***',
        '{"pan":"************4444","cvv":"***"}',
      ],
    ]);
  });

  it('masks binary int8 and numeric results of Parse/Bind/Execute/Sync', async () => {
    const [got] = await c.batch([serialize.parse({ text: 'select pan_int8, pan_num, cvv from cards where id = 1' }), serialize.bind({ binary: true }), serialize.execute({}), serialize.sync()]);
    expect(names(got)).to.deep.equal(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
    const [row] = rowsOf(got);
    expect(bytes(row[0]).readBigInt64BE(0)).to.equal(1111n);
    // ndigits 1, weight 0, sign +, dscale 0, digit 1111.
    expect([...bytes(row[1])]).to.deep.equal([0, 1, 0, 0, 0, 0, 0, 0, 0x04, 0x57]);
    // A starred binary column keeps nothing of the value (its exact filler is result-mask.ts's).
    expect(bytes(row[2]).toString()).to.not.match(/[0-9]/);
  });

  it('masks a named portal executed in pieces without Describe', async () => {
    const [got] = await c.batch([
      serialize.query('begin'),
      serialize.parse({ name: 'pieces', text: 'select pan_int8, cvv from cards order by id' }),
      serialize.bind({ statement: 'pieces', portal: 'p1', binary: true }),
      serialize.execute({ portal: 'p1', rows: 1 }),
      serialize.execute({ portal: 'p1', rows: 1 }),
      serialize.sync(),
    ], 2).then((r) => [r[1]]);
    expect(names(got)).to.deep.equal(['parseComplete', 'bindComplete', 'dataRow', 'portalSuspended', 'dataRow', 'portalSuspended', 'readyForQuery']);
    const rows = rowsOf(got);
    expect(bytes(rows[0][0]).readBigInt64BE(0)).to.equal(1111n);
    expect(rows.map((r) => /[0-9]/.test(bytes(r[1]).toString()))).to.deep.equal([false, false]);
    await c.batch([serialize.query('rollback')]);
  });

  it('keeps the statement usable with the Describe the client sends after the proxy asked its own', async () => {
    await c.batch([serialize.parse({ name: 'later', text: 'select pan from cards where id = 1' }), serialize.bind({ statement: 'later' }), serialize.execute({}), serialize.sync()]);
    const [got] = await c.batch([serialize.bind({ statement: 'later' }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync()]);
    expect(names(got)).to.deep.equal(['bindComplete', 'rowDescription', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect(rowsOf(got)).to.deep.equal([['**** **** **** 1111']]);
  });

  it('refuses a binary result of a type the proxy cannot mask, before it runs, and the connection stays usable', async () => {
    // point is two float8s in binary: a PAN cast to a point would reach the driver as that number.
    const [got] = await c.batch([serialize.parse({ text: "select point(1, 2), 'x'" }), serialize.bind({ binary: true }), serialize.execute({}), serialize.sync()]);
    const errs = errorsOf(got);
    expect(errs.map((e) => e.code)).to.deep.equal(['0A000']);
    expect(errs[0].message).to.equal('agentgate: result values of type OID 600 cannot be checked for card data in binary format; use text format for this column');
    expect(errs[0].message).to.match(/use text format/);
    expect(rowsOf(got)).to.deep.equal([]);
    const [after] = await c.batch([serialize.query('select 1')]);
    expect(rowsOf(after)).to.deep.equal([['1']]);
  });
});
