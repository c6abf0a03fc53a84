// `spec.masking.columns` (public.cards.cvv here) starred wherever the column flows:
// through expressions, arrays, whole rows, subqueries, JSON extraction, against a
// real PostgreSQL 15 through the real sidecar, text and binary results.

import { expect } from 'chai';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { WireClient, array1, dataRows, errorFields, text } from './wire-client.js';
import { loadSqlParser, parseSql } from '../../../core/sql/parser.js';
import { starredOutputs } from '../../../core/sql/starred-outputs.js';

describe('PostgreSQL proxy: starred columns followed through expressions (real cluster)', function () {
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

  async function textRows(sql: string): Promise<(string | null)[][]> {
    const frames = await c.simple(sql);
    expect(frames.filter((f) => f.type === 'E').map((f) => errorFields(f).M)).to.deep.equal([]);
    return dataRows(frames).map((r) => r.map((v) => (v === null ? null : v.toString())));
  }

  it("stars cvv || '' (an expression the server gives no table for)", async () => {
    expect(await textRows("select cvv || '' from cards order by id")).to.deep.equal([['***'], ['***']]);
  });

  it('stars upper(c.cvv) and a renamed expression of a subquery', async () => {
    expect(await textRows('select upper(c.cvv), s.x from cards c, (select cvv || 1 as x from cards where id = 1) s where c.id = 1')).to.deep.equal([['***', '****']]);
  });

  it('stars ARRAY[cvv] element by element (text and binary)', async () => {
    expect(await textRows('select array[cvv] from cards where id = 1')).to.deep.equal([['{***}']]);
    const frames = await c.extended('select array[cvv] from cards where id = 1', true);
    expect(dataRows(frames)[0][0]).to.deep.equal(array1(25, [text('***')]));
  });

  it("stars doc->>'cvv' (a JSON card-data key taken out of the document)", async () => {
    expect(await textRows("select doc->>'cvv', doc->>'pan' from cards where id = 1")).to.deep.equal([['***', '************4444']]);
  });

  it('stars cvv inside a whole table row (composite), leaving the other fields readable', async () => {
    expect(await textRows('select c from cards c where id = 2')).to.deep.equal([['(2,Bob,"no card here",42,42,***,"{""note"":""nothing""}","{""n"": 1}")']]);
  });

  it('stars the cvv key of row_to_json(c): a starred column name is a card-data key', async () => {
    const [[j]] = await textRows('select row_to_json(c) from cards c where id = 2');
    expect(JSON.parse(j!).cvv).to.equal('***');
  });

  it('stars cvv through a CTE, and a UNION column derived from cvv in every row (a column is starred, not a row)', async () => {
    expect(await textRows('with k as (select cvv as secret from cards) select secret || \'\' from k order by 1')).to.deep.equal([['***'], ['***']]);
    expect(await textRows("select holder from cards where id = 1 union all select cvv || '' from cards where id = 1")).to.deep.equal([['***'], ['***']]);
  });

  it('leaves columns that do not derive from cvv alone', async () => {
    expect(await textRows("select holder || '!', id + 1 from cards where id = 2")).to.deep.equal([['Bob!', '3']]);
  });

  describe('the parse-tree helper', () => {
    before(() => loadSqlParser());
    const names = { columns: [{ schema: 'public', table: 'cards', column: 'cvv' }], cardFields: new Set(['cvv', 'pin']), tableColumns: () => ['id', 'cvv', 'pan'] };
    const outs = (sql: string) => {
      const p = parseSql(sql);
      if (!p.ok) throw new Error(p.message);
      return starredOutputs(p.statements[0].stmt, names);
    };

    it('expands * of a starred table by its columns', () => {
      expect(outs('select * from cards')?.byIndex).to.deep.equal([false, true, false]);
    });

    it('says nothing of a table without starred columns', () => {
      expect(outs('select cvv || 1 from other')?.byIndex).to.deep.equal([false]);
    });

    it('follows a COPY (query) and RETURNING', () => {
      expect(outs("copy (select id, lower(cvv) from cards) to stdout")?.byIndex).to.deep.equal([false, true]);
      expect(outs("update cards set pan = '' returning id, cvv || ''")?.byIndex).to.deep.equal([false, true]);
    });
  });
});
