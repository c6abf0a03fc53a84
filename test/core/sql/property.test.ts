// Properties of the classifier over arbitrary input: it never throws and never gives an
// answer the proxy could not act on; the cache never changes an answer.

import { expect } from 'chai';
import fc from 'fast-check';
import { loadSqlParser, SqlClassifier } from '../../../core/sql/index.js';
import { STATEMENT_KINDS } from '../../../core/policy/types.js';

const TOKENS = [
  'SELECT', 'FROM', 'WHERE', 'DELETE', 'UPDATE', 'SET', 'INSERT', 'INTO', 'VALUES', 'WITH', 'AS', 'RETURNING', 'COPY', 'TO',
  'PROGRAM', 'STDOUT', 'DROP', 'TABLE', 'EXPLAIN', 'ANALYZE', 'PREPARE', 'EXECUTE', 'DO', 'CALL', 'BEGIN', 'COMMIT', '(', ')',
  ',', ';', '*', '=', "'x'", '$$ y $$', '"Q"', 'cards', 's.t', 'pg_read_file(\'/etc/passwd\')', '1', '--c\n', '/* c */', 'é',
];

const sqlish = fc.array(fc.constantFrom(...TOKENS), { maxLength: 25 }).map((t) => t.join(' '));

describe('SQL classifier over arbitrary input', () => {
  before(async () => {
    await loadSqlParser();
  });

  it('always answers ok with known kinds, or a refusal with a SQLSTATE and message', () => {
    const c = new SqlClassifier({ maxEntries: 0 });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), sqlish), (sql) => {
        const r = c.classify(sql, 'payments');
        if (r.ok) {
          expect(r.operations.length).to.be.at.least(r.statementCount);
          for (const o of r.operations) expect(STATEMENT_KINDS).to.include(o.statement);
        } else {
          expect(r.sqlstate).to.match(/^[0-9A-Z]{5}$/);
          expect(r.message).to.be.a('string').and.not.equal('');
          if (r.position !== undefined) expect(r.position).to.be.within(1, sql.length + 1);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('gives the same answer from the cache as from a fresh parse', () => {
    const cached = new SqlClassifier({ maxEntries: 50 });
    const fresh = new SqlClassifier({ maxEntries: 0 });
    fc.assert(
      fc.property(fc.array(sqlish, { minLength: 1, maxLength: 20 }), (texts) => {
        for (const sql of [...texts, ...texts]) expect(cached.classify(sql, 'payments')).to.deep.equal(fresh.classify(sql, 'payments'));
      }),
      { numRuns: 100 },
    );
  });
});
