import { expect } from 'chai';
import { loadSqlParser, maskSqlText } from '../../../core/sql/index.js';
import { starAllLiterals } from '../../../core/sql/mask-sql.js';

describe('audit text of SQL: every literal starred when the tree cannot be had', () => {
  before(async () => loadSqlParser());

  it('stars string, escape-string, dollar-quoted and numeric literals, and comments, keeping names and delimiters', () => {
    expect(starAllLiterals(`SELEC "cvv""x", E'a\\'b', $t$12'3$t$, 4.5e3, x1 /* pin /* 42 */ */ -- 99`)).to.equal(
      `SELEC "cvv""x", E'****', $t$****$t$, *****, x1 /*${'*'.repeat(14)}*/ --***`,
    );
  });

  it('stars an unterminated literal to the end', () => {
    expect(starAllLiterals("select * from cards where cvv = '12")).to.equal("select * from cards where cvv = '**");
  });

  it('leaves parameters and identifiers with digits alone', () => {
    expect(starAllLiterals('select c2 from t9 where cvv = $1')).to.equal('select c2 from t9 where cvv = $1');
  });

  it('is what maskSqlText records for an unparseable statement naming a card field', () => {
    expect(maskSqlText("UPDATE cards SET cvv = '123' WHERE")).to.equal("UPDATE cards SET cvv = '***' WHERE");
  });

  it('stars a negative numeric card literal after its sign', () => {
    expect(maskSqlText('UPDATE cards SET pin = - 1234 WHERE id = 1')).to.equal('UPDATE cards SET pin = - **** WHERE id = 1');
  });
});
