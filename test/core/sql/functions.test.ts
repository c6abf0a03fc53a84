// Functions and operators in the classification: which calls an allow rule must name,
// which only an exact name opens, and the statement kinds some calls imply.

import { expect } from 'chai';
import { loadSqlParser, reportedFunctionClass, SqlClassifier } from '../../../core/sql/index.js';

interface Calls {
  statement: string;
  tables?: string[];
  functions?: string[];
  unlisted?: string[];
  exactOnly?: string[];
}

function calls(sql: string): Calls[] {
  const c = new SqlClassifier().classify(sql, 'payments');
  if (!c.ok) throw new Error(`did not parse: ${c.message}`);
  return c.operations.map((o) => {
    const out: Calls = { statement: o.statement };
    if (o.tables.length) out.tables = [...o.tables];
    if (o.functions.length) out.functions = [...o.functions];
    if (o.unlisted?.length) out.unlisted = [...o.unlisted];
    if (o.exactOnly?.length) out.exactOnly = [...o.exactOnly];
    return out;
  });
}

const CASES: Array<[string, Calls[]]> = [
  // Read-only built-ins need no rule, however they are written.
  ["SELECT lower(pan), pg_catalog.upper(pan), now(), random(), count(*) FROM cards WHERE pan LIKE '4%'", [{ statement: 'select', tables: ['public.cards'], functions: ['lower', 'pg_catalog.upper', 'now', 'random', 'count'] }]],
  ['SELECT mydb.pg_catalog.length(pan) FROM cards', [{ statement: 'select', tables: ['public.cards'], functions: ['mydb.pg_catalog.length'] }]],
  ["SELECT substring(pan FROM 1 FOR 6), now() AT TIME ZONE 'utc', a + b * 2, j ->> 'k', j ? 'k' FROM cards", [{ statement: 'select', tables: ['public.cards'], functions: ['pg_catalog.substring', 'pg_catalog.timezone', 'now'] }]],
  // Built-ins with side effects: named by the schema the server resolves them in.
  ["SELECT setval('s', 1), nextval('s')", [{ statement: 'select', functions: ['setval', 'nextval'], unlisted: ['pg_catalog.setval', 'pg_catalog.nextval'] }]],
  ["SELECT lo_from_bytea(0, 'x'), lo_unlink(1), pg_advisory_lock(1)", [{ statement: 'select', functions: ['lo_from_bytea', 'lo_unlink', 'pg_advisory_lock'], unlisted: ['pg_catalog.lo_from_bytea', 'pg_catalog.lo_unlink', 'pg_catalog.pg_advisory_lock'] }]],
  ['SELECT txid_current()', [{ statement: 'select', functions: ['txid_current'], unlisted: ['pg_catalog.txid_current'] }]],
  // A built-in's name in another schema is somebody else's function.
  ['SELECT public.lower(pan) FROM cards', [{ statement: 'select', tables: ['public.cards'], functions: ['public.lower'], unlisted: ['public.lower'] }]],
  ['SELECT purge(), billing.refund(1)', [{ statement: 'select', functions: ['purge', 'billing.refund'], unlisted: ['public.purge', 'billing.refund'] }]],
  ['SELECT "a.b".f()', [{ statement: 'select', functions: ['"a.b".f'], unlisted: ['"a.b".f'] }]],
  ['SELECT * FROM generate_series(1, 3) g, purge() p', [{ statement: 'select', functions: ['generate_series', 'purge'], unlisted: ['public.purge'] }]],
  // SQL from text and session settings: only an exact name opens them.
  ["SELECT ts_rewrite('a'::tsquery, 'SELECT * FROM secret')", [{ statement: 'select', functions: ['ts_rewrite'], unlisted: ['pg_catalog.ts_rewrite'], exactOnly: ['pg_catalog.ts_rewrite'] }]],
  ["SELECT query_to_xml('SELECT * FROM secret', true, true, '')", [{ statement: 'select', functions: ['query_to_xml'], unlisted: ['pg_catalog.query_to_xml'], exactOnly: ['pg_catalog.query_to_xml'] }]],
  ["SELECT * FROM crosstab('SELECT * FROM secret') AS t(a int)", [{ statement: 'select', functions: ['crosstab'], unlisted: ['public.crosstab'], exactOnly: ['public.crosstab'] }]],
  ["SELECT ext.connectby('t', 'id', 'parent', '1', 0)", [{ statement: 'select', functions: ['ext.connectby'], unlisted: ['ext.connectby'], exactOnly: ['ext.connectby'] }]],
  ["SELECT cron.schedule('* * * * *', 'DELETE FROM cards')", [{ statement: 'select', functions: ['cron.schedule'], unlisted: ['cron.schedule'], exactOnly: ['cron.schedule'] }]],
  ["SELECT set_config('search_path', 'secret', false)", [{ statement: 'select', functions: ['set_config'], unlisted: ['pg_catalog.set_config'], exactOnly: ['pg_catalog.set_config'] }]],
  ['SET search_path = secret', [{ statement: 'set', functions: ['set_config'], unlisted: ['pg_catalog.set_config'], exactOnly: ['pg_catalog.set_config'] }]],
  ["COPY cards TO PROGRAM 'curl x'", [{ statement: 'copy-to', tables: ['public.cards'], functions: ['copy-program'], unlisted: ['copy-program'], exactOnly: ['copy-program'] }]],
  // Operators that are not pg_catalog's read-only ones are calls of their function.
  ['SELECT a === b FROM t', [{ statement: 'select', tables: ['public.t'], functions: ['operator(===)'], unlisted: ['public.operator(===)'] }]],
  ['SELECT a OPERATOR(ext.+) b, a OPERATOR(pg_catalog.+) b FROM t', [{ statement: 'select', tables: ['public.t'], functions: ['ext.operator(+)'], unlisted: ['ext.operator(+)'] }]],
  ['SELECT 1 WHERE 1 =#= ANY (SELECT 1)', [{ statement: 'select', functions: ['operator(=#=)'], unlisted: ['public.operator(=#=)'] }]],
  // Functions anywhere in a write count on the write.
  ["INSERT INTO t VALUES (nextval('s'))", [{ statement: 'insert', tables: ['public.t'], functions: ['nextval'], unlisted: ['pg_catalog.nextval'] }]],
  ['UPDATE t SET a = purge() WHERE id = 1', [{ statement: 'update', tables: ['public.t'], functions: ['purge'], unlisted: ['public.purge'] }]],
  // pg_notify is NOTIFY.
  ["SELECT pg_notify('payments', 'x')", [{ statement: 'select', functions: ['pg_notify'] }, { statement: 'notify', functions: ['pg_notify'] }]],
  ["SELECT public.pg_notify('payments', 'x')", [{ statement: 'select', functions: ['public.pg_notify'], unlisted: ['public.pg_notify'] }]],
  ["NOTIFY payments, 'x'", [{ statement: 'notify' }]],
  ['LISTEN payments', [{ statement: 'listen' }]],
  ['UNLISTEN *', [{ statement: 'listen' }]],
  // Row locks are writes of a kind: a lock operation on the tables the locking SELECT reads.
  ['SELECT * FROM cards FOR UPDATE', [{ statement: 'select', tables: ['public.cards'] }, { statement: 'lock', tables: ['public.cards'] }]],
  ['SELECT * FROM cards c JOIN owners o ON o.id = c.owner FOR SHARE OF c', [{ statement: 'select', tables: ['public.cards', 'public.owners'] }, { statement: 'lock', tables: ['public.cards', 'public.owners'] }]],
  ['SELECT * FROM a WHERE id IN (SELECT id FROM b FOR KEY SHARE)', [{ statement: 'select', tables: ['public.a', 'public.b'] }, { statement: 'lock', tables: ['public.b'] }]],
  ['DECLARE c CURSOR FOR SELECT * FROM cards FOR NO KEY UPDATE', [{ statement: 'select', tables: ['public.cards'] }, { statement: 'lock', tables: ['public.cards'] }]],
  ['LOCK TABLE cards IN SHARE MODE', [{ statement: 'lock', tables: ['public.cards'] }]],
];

describe('SQL classifier: functions and operators', () => {
  before(loadSqlParser);

  for (const [sql, expected] of CASES) {
    it(sql, () => {
      expect(calls(sql)).to.deep.equal(expected);
    });
  }

  it('explains each reported name by its class', () => {
    expect(reportedFunctionClass('lower')).to.equal('read-only');
    expect(reportedFunctionClass('pg_catalog.setval')).to.equal('side-effects');
    expect(reportedFunctionClass('public.lower')).to.equal('unknown');
    expect(reportedFunctionClass('ts_stat')).to.equal('runs-sql');
    expect(reportedFunctionClass('set_config')).to.equal('settings');
    expect(reportedFunctionClass('pg_stat_get_activity')).to.equal('reads-outside');
    expect(reportedFunctionClass('pg_notify')).to.equal('notify');
    expect(reportedFunctionClass('copy-file')).to.equal('copy-server');
    expect(reportedFunctionClass('operator(===)')).to.equal('unknown-operator');
    expect(reportedFunctionClass('operator(+)')).to.equal('read-only');
    expect(reportedFunctionClass('"a.b".lower')).to.equal('unknown');
  });
});
