// The classifier's verdict on malformed SQL must be the answer PostgreSQL itself gives:
// same SQLSTATE, message and position. Runs against a real throw-away cluster (PG 15 server;
// the classifier embeds the PG 18 parser, whose syntax errors read the same).

import { expect } from 'chai';
import pg from 'pg';
import { loadSqlParser, SqlClassifier } from '../../../core/sql/index.js';
import { startCluster, type PgCluster } from '../../support/postgres.js';

interface PgError {
  code: string;
  message: string;
  position?: string;
}

describe('SQL classifier agrees with a real PostgreSQL server on syntax errors', function () {
  this.timeout(120_000);
  let cluster: PgCluster;
  let client: pg.Client;
  const classifier = new SqlClassifier();

  before(async () => {
    await loadSqlParser();
    cluster = await startCluster();
    client = new pg.Client({ connectionString: cluster.url() });
    await client.connect();
  });

  after(async () => {
    await client?.end().catch(() => undefined);
    await cluster?.stop();
  });

  const MALFORMED = [
    'SELEC 1',
    'SELECT * FROM WHERE x = 1',
    "SELECT 'é', 'ü' FROM WHERE",
    'SELECT 1; DROP TABLE',
    "SELECT 'abc",
    'SELECT * FROM t WHERE (a = 1',
    'DELETE t',
    'UPDATE t SET WHERE id = 1',
  ];

  it('reads literals as the server does only with standard_conforming_strings on, so SET … off is flagged', async () => {
    await cluster.sql('CREATE TABLE victim (id int)');
    const sql = "SELECT '\\'' , 1; DROP TABLE victim; --'";
    const seen = classifier.classify(sql, 'payments');
    expect(seen.ok && seen.operations.map((o) => o.statement)).to.deep.equal(['select']);
    const off = classifier.classify('SET standard_conforming_strings = off', 'payments');
    expect(off.ok && off.operations[0].functions).to.deep.equal(['set_config']);
    // What the flag prevents: with the setting off the server runs a DROP the parser never saw.
    await client.query('SET standard_conforming_strings = off');
    try {
      await client.query(sql);
    } finally {
      await client.query('SET standard_conforming_strings = on');
    }
    expect((await cluster.sql("SELECT to_regclass('victim') AS r"))[0].r).to.equal(null);
  });

  for (const sql of MALFORMED) {
    it(sql, async () => {
      const err = (await client.query(sql).then(
        () => undefined,
        (e: unknown) => e,
      )) as PgError | undefined;
      expect(err, 'the server accepted it').to.not.equal(undefined);
      const c = classifier.classify(sql, 'payments');
      expect(c.ok).to.equal(false);
      if (c.ok) return;
      expect({ sqlstate: c.sqlstate, message: c.message, position: c.position }).to.deep.equal({
        sqlstate: err!.code,
        message: err!.message,
        position: Number(err!.position),
      });
    });
  }
});
