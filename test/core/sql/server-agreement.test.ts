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
