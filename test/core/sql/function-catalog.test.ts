// The proxy's list of read-only functions against a real PostgreSQL 15: the committed list is
// what the server's catalogue gives today, and every function of that catalogue that can
// write, change state or run SQL is refused under a rule that allows reads only.

import fs from 'node:fs';
import { expect } from 'chai';
import { loadSqlParser, SqlClassifier } from '../../../core/sql/index.js';
import { parsePolicy } from '../../../core/policy/load.js';
import type { CompiledPolicy } from '../../../core/policy/engine.js';
import { combineDecisions } from '../../../core/policy/engine.js';
import type { Identity } from '../../../core/identity.js';
import { startCluster, type PgCluster } from '../../support/postgres.js';
import {
  CATALOG_FILE, CHANGES_SETTINGS, readFunctionCatalog, renderFunctionCatalog, RUNS_SQL, STABLE_WITH_SIDE_EFFECTS, VOLATILE_READ_ONLY, READS_OUTSIDE,
} from '../../support/function-catalog.js';

const agent: Identity = { subject: 'system:serviceaccount:payments:agent', groups: [], via: 'local-token' };

function policy(rules: string): CompiledPolicy {
  const r = parsePolicy(`apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: reads }\nspec:\n  default: deny\n  rules:\n${rules}`, 'reads.yaml');
  if (!r.policy) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.policy;
}

const READS_ONLY = policy(`    - { name: reads, postgres: { statements: [select, set, show, transaction], tables: ["public.*"] }, action: allow }\n`);

describe('PostgreSQL 15 function catalogue (real server)', function () {
  this.timeout(120_000);
  let cluster: PgCluster;
  const classifier = new SqlClassifier();

  function decide(p: CompiledPolicy, sql: string) {
    const c = classifier.classify(sql, 'payments');
    if (!c.ok) throw new Error(`${sql}: ${c.message}`);
    return combineDecisions(c.operations.map((o) => p.decide(agent, o)));
  }

  before(async () => {
    await loadSqlParser();
    cluster = await startCluster();
  });

  after(async () => {
    await cluster?.stop();
  });

  it('core/sql/pg15-catalog.ts is what the generator makes from the server today', async () => {
    const generated = renderFunctionCatalog(await readFunctionCatalog((sql) => cluster.sql(sql)));
    expect(generated).to.equal(fs.readFileSync(CATALOG_FILE, 'utf8'));
  });

  it('refuses, under a reads-only rule, every pg_catalog function that can write, change state or run SQL', async () => {
    // Volatile minus the reviewed read-only ones, plus the reviewed stable exceptions.
    const rows = await cluster.sql(`
      SELECT quote_ident(proname) AS name, pronargs AS n
        FROM pg_proc
       WHERE pronamespace = 'pg_catalog'::regnamespace
         AND ((provolatile = 'v' AND NOT proname = ANY ($$${'{' + VOLATILE_READ_ONLY.join(',') + '}'}$$::text[]))
              OR proname = ANY ($$${'{' + [...RUNS_SQL, ...CHANGES_SETTINGS, ...STABLE_WITH_SIDE_EFFECTS, ...READS_OUTSIDE].join(',') + '}'}$$::text[]))
       ORDER BY 1, 2`);
    expect(rows.length).to.be.greaterThan(150);
    const allowed: string[] = [];
    for (const r of rows) {
      const args = Array.from({ length: Number(r.n) }, () => 'NULL').join(', ');
      for (const sql of [`SELECT ${r.name}(${args})`, `SELECT pg_catalog.${r.name}(${args})`, `SELECT * FROM public.t WHERE id = (SELECT 1 FROM ${r.name}(${args}))`]) {
        if (decide(READS_ONLY, sql).action === 'allow') allowed.push(sql);
      }
    }
    expect(allowed).to.deep.equal([]);
  });

  it('allows, under the same rule, a read calling only stable or immutable built-ins (and the reviewed volatile ones)', () => {
    expect(decide(READS_ONLY, "SELECT lower(pan), now(), random(), to_char(now(), 'YYYY'), count(*) FROM public.cards WHERE pan LIKE '4%'").action).to.equal('allow');
  });

  it('refuses SQL run from text (ts_rewrite reads a table the statement never names) unless a rule names the function exactly', async () => {
    await cluster.sql("CREATE TABLE secret (q tsquery, r tsquery); INSERT INTO secret VALUES ('a', 'leaked')");
    const sql = "SELECT ts_rewrite('a'::tsquery, 'SELECT q, r FROM secret')::text AS t";
    // What the server does with it: the text argument is a query, run as the caller.
    expect(await cluster.sql(sql)).to.deep.equal([{ t: "'leaked'" }]);
    const cardsOnly = policy(`    - { name: cards, postgres: { statements: [select], tables: [public.cards] }, action: allow }
`);
    expect(decide(cardsOnly, sql).action).to.equal('deny');
    const star = policy(`    - { name: cards, postgres: { statements: [select], tables: [public.cards], functions: ["*"] }, action: allow }
`);
    expect(decide(star, sql).action).to.equal('deny');
    const named = policy(`    - { name: cards, postgres: { statements: [select], tables: [public.cards], functions: [pg_catalog.ts_rewrite] }, action: allow }
`);
    expect(decide(named, sql).action).to.equal('allow');
  });

  it('refuses a user-defined function that deletes rows until a rule names it', async () => {
    await cluster.sql('CREATE TABLE cards (pan text)');
    await cluster.sql("CREATE FUNCTION purge() RETURNS int LANGUAGE sql AS 'DELETE FROM cards RETURNING 1'");
    // The server would run it as a select: only the name tells the proxy.
    await cluster.sql("INSERT INTO cards VALUES ('x')");
    await cluster.sql('SELECT purge()');
    expect(await cluster.sql('SELECT count(*)::int AS n FROM cards')).to.deep.equal([{ n: 0 }]);
    const d = decide(READS_ONLY, 'SELECT purge()');
    expect(d.action).to.equal('deny');
    expect(d.rule).to.equal('default');
    expect(d.reason).to.include('public.purge');
    const named = policy(`    - { name: reads, postgres: { statements: [select], functions: [public.purge] }, action: allow }\n`);
    expect(decide(named, 'SELECT purge()').action).to.equal('allow');
    expect(decide(named, 'SELECT public.purge()').action).to.equal('allow');
    expect(decide(named, 'SELECT other.purge()').action).to.equal('deny');
  });
});
