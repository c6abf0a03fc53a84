// COPY … TO STDOUT masked as much as SELECT (text, CSV, binary), against a real
// PostgreSQL 15 through the real sidecar. The policy stars public.cards.cvv.

import { expect } from 'chai';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { WireClient, errorFields, int4, int8, numeric, text } from './wire-client.js';

describe('PostgreSQL proxy: COPY TO STDOUT is masked like a SELECT (real cluster)', function () {
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

  async function copyOut(sql: string): Promise<Buffer[]> {
    const frames = await c.simple(sql);
    expect(frames.filter((f) => f.type === 'E').map((f) => errorFields(f).M)).to.deep.equal([]);
    return frames.filter((f) => f.type === 'd').map((f) => f.body);
  }

  it('masks a table in text format: every column by its type, the starred cvv starred, JSON masked structurally', async () => {
    const rows = (await copyOut('copy cards to stdout')).map((b) => b.toString());
    expect(rows).to.deep.equal([
      '1\tAda\t**** **** **** 1111\t0000000000001111\t0000000000001111\t***\t{"pan":"************4444","cvv":"***"}\t{"card": {"number": "************1881"}}\n',
      '2\tBob\tno card here\t42\t42\t***\t{"note":"nothing"}\t{"n": 1}\n',
    ]);
  });

  it('masks text and number columns in place (numbers with zeros) when no column is starred or structured', async () => {
    expect((await copyOut('copy cards(id, pan, pan_num, pan_int8, holder) to stdout')).map(String)).to.deep.equal([
      '1\t**** **** **** 1111\t0000000000001111\t0000000000001111\tAda\n',
      '2\tno card here\t42\t42\tBob\n',
    ]);
  });

  it('stars cvv by its position in a column list', async () => {
    expect((await copyOut('copy cards(cvv, id) to stdout')).map(String)).to.deep.equal(['***\t1\n', '***\t2\n']);
  });

  it('stars a COPY (query) column derived from cvv', async () => {
    expect((await copyOut("copy (select id, cvv || '' from cards order by id) to stdout")).map(String)).to.deep.equal(['1\t***\n', '2\t***\n']);
  });

  it('decodes bytea hex in COPY text output (\\\\x3431…) and masks the bytes', async () => {
    const [row] = await copyOut("copy (select convert_to('card 4111111111111111', 'UTF8')) to stdout");
    expect(row.toString()).to.equal(`\\\\x${Buffer.from('card ************1111').toString('hex')}\n`);
  });

  it('masks a JSON PAN first and still stars the cvv key after it (the document stays valid JSON)', async () => {
    const [row] = await copyOut(`copy (select '{"n": 4111111111111111, "cvv": "123"}'::json) to stdout`);
    expect(row.toString()).to.equal('{"n": "************1111", "cvv": "***"}\n');
  });

  it('masks CSV output, quoting what it rewrote', async () => {
    const rows = (await copyOut("copy cards(id, pan, cvv, doc) to stdout with (format csv, header)")).map(String);
    expect(rows).to.deep.equal(['id,pan,cvv,doc\n', '1,"**** **** **** 1111","***","{""pan"":""************4444"",""cvv"":""***""}"\n', '2,no card here,"***","{""note"":""nothing""}"\n']);
  });

  it('masks binary COPY of a table: int8 and numeric decoded, cvv starred', async () => {
    const data = Buffer.concat(await copyOut('copy cards(id, pan_int8, pan_num, cvv) to stdout (format binary)'));
    const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), int4(0), int4(0)]);
    const field = (b: Buffer) => Buffer.concat([int4(b.length), b]);
    const row = (id: number, i8: bigint, num: Buffer) => Buffer.concat([Buffer.from([0, 4]), field(int4(id)), field(int8(i8)), field(num), field(text('***'))]);
    expect(data).to.deep.equal(Buffer.concat([header, row(1, 1111n, numeric(0, [1111])), row(2, 42n, numeric(0, [42])), Buffer.from([0xff, 0xff])]));
  });

  it('refuses binary COPY (query), whose column types it cannot know, and no row reaches the client', async () => {
    const frames = await c.simple('copy (select pan_int8 from cards) to stdout (format binary)');
    expect(frames.some((f) => f.type === 'd' && f.body.length > 19)).to.equal(false);
    const err = frames.find((f) => f.type === 'E');
    expect(err && errorFields(err).M).to.match(/binary output cannot be checked for card data; use FORMAT text or csv/);
  });
});
