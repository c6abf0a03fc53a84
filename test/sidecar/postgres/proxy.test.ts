// The PostgreSQL proxy against a real cluster, driven by real clients (psql,
// pgbench, the pg driver) and, for protocol corners no driver produces on demand
// (pipelines, malformed bytes), by raw frontend messages built with pg-protocol.

import { expect } from 'chai';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { startHarness, psql, readAudit, run, AGENT_PASSWORD } from './harness.js';
import type { Harness } from './harness.js';
import { RawClient, rowsOf } from './raw-client.js';


describe('PostgreSQL proxy (real cluster, real clients)', function () {
  this.timeout(60_000);
  let h: Harness;

  before(async () => {
    h = await startHarness();
    await h.startProxy();
  });
  after(async () => {
    await h?.stop();
  });

  async function client(extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
    const c = new pg.Client(h.clientConfig(extra));
    await c.connect();
    return c;
  }

  describe('results are masked', () => {
    it('masks PANs in text columns through psql, keeping separators and length', async () => {
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', 'select pan from cards order by id']);
      expect(r.stdout).to.equal('**** **** **** 1111\nno card here\n');
    });

    it('turns masked digits of numeric and int8 columns into 0 so drivers still parse them', async () => {
      const c = await client();
      try {
        const r = await c.query('select pan_num, pan_int8 from cards order by id');
        expect(r.rows).to.deep.equal([
          { pan_num: '0000000000001111', pan_int8: '0000000000001111' },
          { pan_num: '42', pan_int8: '42' },
        ]);
      } finally {
        await c.end();
      }
    });

    it('masks PANs inside json and jsonb values', async () => {
      const c = await client();
      try {
        const r = await c.query('select doc, docb from cards where id = 1');
        expect(r.rows[0].doc).to.deep.equal({ pan: '************4444', cvv: '***' });
        expect(r.rows[0].docb).to.deep.equal({ card: { number: '************1881' } });
      } finally {
        await c.end();
      }
    });

    it('masks PANs held as ASCII inside bytea values (hex output)', async () => {
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', "select convert_from(decode(encode(convert_to('card 4111111111111111', 'UTF8'), 'hex'), 'hex'), 'UTF8') as t, convert_to('card 4111111111111111', 'UTF8') as b"]);
      expect(r.stdout).to.equal(`card ************1111|\\x${Buffer.from('card ************1111').toString('hex')}\n`);
    });

    it('stars columns named in spec.masking.columns whole', async () => {
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', 'select id, cvv from cards order by id']);
      expect(r.stdout).to.equal('1|***\n2|***\n');
    });

    it('decodes, masks and re-encodes binary int8 and numeric values', async () => {
      // Binary results through the extended protocol: Bind asks for format 1 on every column.
      const c = await RawClient.connect(h.proxyPort);
      try {
        c.write([
          serialize.parse({ text: 'select pan_int8, pan_num, pan from cards where id = 1' }),
          serialize.bind({ binary: true }),
          serialize.describe({ type: 'P' }),
          serialize.execute({}),
          serialize.sync(),
        ]);
        const msgs = await c.until((m) => m.name === 'readyForQuery');
        const row = msgs.find((m) => m.name === 'dataRow') as unknown as { fields: Buffer[] } | undefined;
        expect(row, msgs.map((m) => m.name).join()).to.not.equal(undefined);
        // pg-protocol hands binary fields over as latin1 strings.
        const int8 = Buffer.from(row!.fields[0] as unknown as string, 'latin1');
        expect(int8.readBigInt64BE(0)).to.equal(1111n);
        expect(Buffer.from(row!.fields[2] as unknown as string, 'latin1').toString()).to.equal('**** **** **** 1111');
      } finally {
        c.end();
      }
    });

    it('stars card-data keys and masks PANs in a jsonb result through psql (jsonb normalizes spacing)', async () => {
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', `select '{"cvv":"123","pan":"4111111111111111"}'::jsonb`]);
      expect(r.stdout).to.equal('{"cvv": "***", "pan": "************1111"}\n');
    });

    it('masks json and jsonb through the pg driver, rewriting the row when a value changes length', async () => {
      const c = await client();
      try {
        // A PAN written as a JSON number becomes a string: the value grows by two quotes.
        const r = await c.query(`select '{"pin": 1234, "n": 4111111111111111}'::json as j, '{"track2": ";4111111111111111=2512"}'::jsonb as b, 'after' as t`);
        expect(r.rows).to.deep.equal([{ j: { pin: '****', n: '************1111' }, b: { track2: '**********************' }, t: 'after' }]);
      } finally {
        await c.end();
      }
    });

    it('masks every element of json[] and jsonb[] results (text format), NULLs kept', async () => {
      const c = await client();
      try {
        const r = await c.query(`select array['{"cvv":"123"}'::jsonb, null, '{"pan":"4111 1111 1111 1111"}'] as a, array['{"pin":"9"}'::json] as j`);
        expect(r.rows[0].a).to.deep.equal([{ cvv: '***' }, null, { pan: '**** **** **** 1111' }]);
        expect(r.rows[0].j).to.deep.equal([{ pin: '*' }]);
      } finally {
        await c.end();
      }
    });

    it('masks binary json, jsonb (version byte + text) and jsonb[] values', async () => {
      const c = await RawClient.connect(h.proxyPort);
      try {
        c.write([
          serialize.parse({ text: `select '{"cvv":"123"}'::json, '{"cvv":"123","pan":"4111111111111111"}'::jsonb, array['{"pin":"12"}'::jsonb, '{"cvv":7}']` }),
          serialize.bind({ binary: true }),
          serialize.describe({ type: 'P' }),
          serialize.execute({}),
          serialize.sync(),
        ]);
        const msgs = await c.until((m) => m.name === 'readyForQuery');
        const row = msgs.find((m) => m.name === 'dataRow') as unknown as { fields: string[] };
        expect(Buffer.from(row.fields[0], 'latin1').toString()).to.equal('{"cvv":"***"}');
        const jsonb = Buffer.from(row.fields[1], 'latin1');
        expect(jsonb[0]).to.equal(1);
        expect(jsonb.subarray(1).toString()).to.equal('{"cvv": "***", "pan": "************1111"}');
        const arr = Buffer.from(row.fields[2], 'latin1');
        // ndim 1, no nulls, element type (pg-protocol decodes fields as UTF-8, so its byte
        // 0xDA does not survive the test client), 2 elements from 1; then (length, jsonb) each.
        expect([arr.readInt32BE(0), arr.readInt32BE(4), arr.readInt32BE(12), arr.readInt32BE(16)]).to.deep.equal([1, 0, 2, 1]);
        const len = arr.readInt32BE(20);
        expect(arr.subarray(24, 24 + len).toString('latin1')).to.equal('\x01{"pin": "**"}');
        const len2 = arr.readInt32BE(24 + len);
        expect(arr.subarray(28 + len, 28 + len + len2).toString('latin1')).to.equal('\x01{"cvv": "*"}');
        expect(arr.length).to.equal(28 + len + len2);
      } finally {
        c.end();
      }
    });

    it('masks binary results of a statement described once and executed without a portal Describe', async () => {
      // Drivers with a statement cache (pgx, JDBC) Describe the statement, then Bind + Execute only.
      const c = await RawClient.connect(h.proxyPort);
      try {
        c.write([serialize.parse({ name: 'bin', text: 'select pan_num, holder from cards where id = $1' }), serialize.describe({ type: 'S', name: 'bin' }), serialize.sync()]);
        const described = await c.until((m) => m.name === 'readyForQuery');
        c.write([serialize.bind({ statement: 'bin', values: ['1'], binary: true }), serialize.execute({}), serialize.sync()]);
        const msgs = await c.until((m) => m.name === 'readyForQuery', described.length);
        const row = msgs.find((m) => m.name === 'dataRow') as unknown as { fields: string[] };
        const numeric = Buffer.from(row.fields[0], 'latin1');
        // ndigits 1, weight 0, sign +, dscale 0, digit 1111: the PAN became 0000000000001111.
        expect([...numeric]).to.deep.equal([0, 1, 0, 0, 0, 0, 0, 0, 0x04, 0x57]);
        expect(Buffer.from(row.fields[1], 'latin1').toString()).to.equal('Ada');
      } finally {
        c.end();
      }
    });

    it('masks prepared-statement results and keeps the statement reusable', async () => {
      const c = await client();
      try {
        for (let i = 0; i < 3; i++) {
          const r = await c.query({ name: 'by-id', text: 'select pan, pan_int8 from cards where id = $1', values: [1] });
          expect(r.rows).to.deep.equal([{ pan: '**** **** **** 1111', pan_int8: '0000000000001111' }]);
        }
      } finally {
        await c.end();
      }
    });

    it('masks PANs quoted in server errors (a unique violation DETAIL quotes the key)', async () => {
      const c = await client();
      try {
        await c.query('create temp table t(pan text primary key)');
        await c.query("insert into t values ('4111111111111111')");
        const err = await c.query("insert into t values ('4111111111111111')").catch((e: unknown) => e as pg.DatabaseError);
        expect((err as pg.DatabaseError).code).to.equal('23505');
        expect((err as pg.DatabaseError).detail).to.equal('Key (pan)=(************1111) already exists.');
      } finally {
        await c.end();
      }
    });

    it('masks NOTIFY payloads', async () => {
      const listener = await client();
      const sender = await client();
      try {
        await listener.query('listen cards');
        const got = new Promise<string>((resolve) => listener.on('notification', (n) => resolve(n.payload ?? '')));
        await sender.query("select pg_notify('cards', 'card 4111111111111111 charged')");
        expect(await got).to.equal('card ************1111 charged');
      } finally {
        await listener.end();
        await sender.end();
      }
    });
  });

  describe('policy', () => {
    it('decides a prepared statement again at every Execute: a policy reloaded since Parse applies to its next run', async () => {
      const c = await client();
      const good = fs.readFileSync(h.policyFile, 'utf8');
      // pg keeps the named statement prepared: later runs send Bind + Execute only.
      const q = { name: 'seven', text: 'select 7 as n' };
      const runs = async (want: 'ok' | '42501') => {
        for (let i = 0; i < 100; i++) {
          const r = await c.query(q).then(
            (res) => res.rows,
            (e: pg.DatabaseError) => e.code,
          );
          if ((want === 'ok' && Array.isArray(r)) || r === want) return r;
          await new Promise((res) => setTimeout(res, 100));
        }
        throw new Error(`the statement never became ${want}`);
      };
      try {
        expect(await c.query(q).then((r) => r.rows)).to.deep.equal([{ n: 7 }]);
        expect(await c.query(q).then((r) => r.rows)).to.deep.equal([{ n: 7 }]);
        fs.writeFileSync(h.policyFile, good.replace('statements: [select, insert,', 'statements: [insert,'));
        expect(await runs('42501')).to.equal('42501');
        fs.writeFileSync(h.policyFile, good);
        expect(await runs('ok')).to.deep.equal([{ n: 7 }]);
      } finally {
        fs.writeFileSync(h.policyFile, good);
        await c.end();
      }
    });

    it('refuses a statement too large to parse within its budget with 54000, and the connection stays usable', async () => {
      const c = await client();
      try {
        // A 2 MiB string the classifier would parse on the event loop every session shares.
        const big = `select '${'x'.repeat(2 * 1024 * 1024)}' as big`;
        const err = (await c.query(big).catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.code).to.equal('54000');
        expect(err.message).to.equal(
          `agentgate: the statement is ${big.length} bytes, over the 1048576 the proxy parses before a statement runs; send large values as Bind parameters or with COPY FROM STDIN`,
        );
        expect((await c.query('select 1 as n')).rows).to.deep.equal([{ n: 1 }]);
      } finally {
        await c.end();
      }
    });

    it('refuses DROP with SQLSTATE 42501 naming the rule, and the connection stays usable', async () => {
      const c = await client();
      try {
        const err = (await c.query('drop table items').catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.code).to.equal('42501');
        expect(err.message).to.match(/^agentgate: permission denied: .*no-drops/);
        const r = await c.query('select count(*)::int as n from items');
        expect(r.rows[0].n).to.be.greaterThan(0);
      } finally {
        await c.end();
      }
    });

    it('aborts the transaction on a refusal, so COMMIT becomes ROLLBACK on the server', async () => {
      const c = await client();
      try {
        await c.query('begin');
        await c.query("insert into items(name, price) values ('in-tx', 1)");
        const err = (await c.query('drop table items').catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.code).to.equal('42501');
        const after = (await c.query('select 1').catch((e: unknown) => e)) as pg.DatabaseError;
        expect(after.code).to.equal('25P02');
        const commit = await c.query('commit');
        expect(commit.command).to.equal('ROLLBACK');
        const r = await c.query("select count(*)::int as n from items where name = 'in-tx'");
        expect(r.rows[0].n).to.equal(0);
      } finally {
        await c.end();
      }
    });

    it('refuses a whole multi-statement query when one statement is refused', async () => {
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', "insert into items(name, price) values ('multi', 1); drop table items"]);
      expect(r.stderr).to.match(/ERROR: {2}agentgate: permission denied/);
      const c = await client();
      try {
        const n = await c.query("select count(*)::int as n from items where name = 'multi'");
        expect(n.rows[0].n).to.equal(0);
      } finally {
        await c.end();
      }
    });

    it('answers unparseable SQL with the parser\'s own 42601 error and position, without reaching the server', async () => {
      const c = await client();
      try {
        const err = (await c.query('selec 1').catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.code).to.equal('42601');
        expect(err.message).to.equal('syntax error at or near "selec"');
        expect(err.position).to.equal('1');
      } finally {
        await c.end();
      }
    });

    it('refuses statements that need approval, saying approval is required (no approval service: fail closed)', async () => {
      const c = await client();
      try {
        const err = (await c.query("do $$ begin perform 1; end $$").catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.code).to.equal('42501');
        expect(err.message).to.match(/^agentgate: approval required/);
      } finally {
        await c.end();
      }
    });

    it('refuses a prepared statement at Parse, answering like a server error, and the connection stays usable', async () => {
      const c = await client();
      try {
        const err = (await c.query({ name: 'dropper', text: 'drop table items' }).catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.code).to.equal('42501');
        const r = await c.query({ name: 'counter', text: 'select count(*)::int as n from items where id < $1', values: [10] });
        expect(r.rows[0].n).to.equal(9);
      } finally {
        await c.end();
      }
    });
  });

  describe('extended protocol and pipelining', () => {
    it('masks by the result formats of each Bind when the same statement is bound again with other formats', async () => {
      const c = await RawClient.connect(h.proxyPort);
      try {
        c.write([serialize.parse({ name: 'fmt', text: 'select pan_num from cards where id = $1' }), serialize.describe({ type: 'S', name: 'fmt' }), serialize.sync()]);
        let seen = (await c.until((m) => m.name === 'readyForQuery')).length;
        const values: string[] = [];
        for (const binary of [false, false, true, true, false]) {
          c.write([serialize.bind({ statement: 'fmt', values: ['1'], binary }), serialize.execute({}), serialize.sync()]);
          const msgs = await c.until((m) => m.name === 'readyForQuery', seen);
          seen += msgs.length;
          const row = msgs.find((m) => m.name === 'dataRow') as unknown as { fields: string[] };
          values.push(binary ? [...Buffer.from(row.fields[0], 'latin1')].join(',') : row.fields[0]);
        }
        // numeric binary: ndigits 1, weight 0, sign +, dscale 0, digit 1111.
        const bin = '0,1,0,0,0,0,0,0,4,87';
        expect(values).to.deep.equal(['0000000000001111', '0000000000001111', bin, bin, '0000000000001111']);
      } finally {
        c.end();
      }
    });

    it('answers a pipeline with a refused statement in the middle like PostgreSQL: results, error, skip to Sync', async () => {
      const c = await RawClient.connect(h.proxyPort);
      try {
        c.write([
          serialize.parse({ name: 's1', text: 'select $1::int + 1' }),
          serialize.bind({ statement: 's1', values: ['1'] }),
          serialize.execute({}),
          serialize.parse({ name: 's2', text: 'drop table items' }),
          serialize.bind({ statement: 's2' }),
          serialize.execute({}),
          serialize.sync(),
          serialize.bind({ statement: 's1', values: ['41'] }),
          serialize.execute({}),
          serialize.sync(),
        ]);
        const first = await c.until((m) => m.name === 'readyForQuery');
        expect(first.map((m) => m.name)).to.deep.equal(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'error', 'readyForQuery']);
        expect((first[4] as unknown as { code: string }).code).to.equal('42501');
        const second = await c.until((m) => m.name === 'readyForQuery', first.length);
        expect(second.map((m) => m.name)).to.deep.equal(['bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
        expect(rowsOf(second)).to.deep.equal([['42']]);
      } finally {
        c.end();
      }
    });

    it('relays a server error in the middle of a pipeline and skips to Sync', async () => {
      const c = await RawClient.connect(h.proxyPort);
      try {
        c.write([
          serialize.parse({ text: 'select 1 / (price - price) from items' }),
          serialize.bind({}),
          serialize.execute({}),
          serialize.parse({ text: 'select 2' }),
          serialize.bind({}),
          serialize.execute({}),
          serialize.sync(),
          serialize.query('select 3'),
        ]);
        const first = await c.until((m) => m.name === 'readyForQuery');
        expect(first.map((m) => m.name)).to.deep.equal(['parseComplete', 'bindComplete', 'error', 'readyForQuery']);
        expect((first[2] as unknown as { code: string }).code).to.equal('22012');
        const second = await c.until((m) => m.name === 'readyForQuery', first.length);
        expect(rowsOf(second)).to.deep.equal([['3']]);
      } finally {
        c.end();
      }
    });

    it('runs pgbench -M prepared and -M simple through the proxy without errors', async () => {
      const env = { ...h.cluster.env('agent_rw', AGENT_PASSWORD, 'payments') };
      await run('pgbench', ['-i', '-s', '1', '-q'], { env });
      for (const mode of ['prepared', 'simple', 'extended']) {
        const { stdout } = await run('pgbench', ['-S', '-M', mode, '-c', '4', '-j', '2', '-t', '200', '-n'], { env: h.proxyEnv() });
        expect(stdout).to.match(/number of transactions actually processed: 800\/800/);
        expect(stdout).to.match(/number of failed transactions: 0/);
      }
    });
  });

  describe('COPY', () => {
    it('copies out with PANs masked', async () => {
      const r = await psql(h.proxyEnv(), ['-c', 'copy (select id, pan from cards order by id) to stdout']);
      expect(r.stdout).to.equal('1\t**** **** **** 1111\n2\tno card here\n');
    });

    it('stars card-data keys in json and jsonb fields of COPY … TO STDOUT text output, and rebuilds those rows', async () => {
      const r = await psql(h.proxyEnv(), ['-c', "copy (select id, doc, docb, array['{\"pin\":\"12\"}'::jsonb] from cards order by id) to stdout"]);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.equal(
        '1\t{"pan":"************4444","cvv":"***"}\t{"card": {"number": "************1881"}}\t{"{\\\\"pin\\\\": \\\\"**\\\\"}"}\n' +
          '2\t{"note":"nothing"}\t{"n": 1}\t{"{\\\\"pin\\\\": \\\\"**\\\\"}"}\n',
      );
    });

    it('masks every row of a large COPY and a large SELECT, whatever the chunk boundaries', async () => {
      const r = await psql(h.proxyEnv(), ['-c', "copy (select g, '4111 1111 1111 1111', repeat('x', g % 97) from generate_series(1, 50000) g) to stdout"]);
      const lines = r.stdout.split('\n').filter((l) => l);
      expect(lines).to.have.length(50000);
      expect(lines.every((l, i) => l.startsWith(`${i + 1}\t**** **** **** 1111\t`))).to.equal(true);
      const c = await client();
      try {
        const res = await c.query("select g, '5555555555554444' as pan, repeat('y', g % 113) as pad from generate_series(1, 50000) g");
        expect(res.rows).to.have.length(50000);
        expect(res.rows.every((row: { pan: string }) => row.pan === '************4444')).to.equal(true);
      } finally {
        await c.end();
      }
    });

    it('copies in', async () => {
      const r = await psql(h.proxyEnv(), ['-c', 'copy items(name, price) from stdin'], 'copied-1\t7\ncopied-2\t8\n\\.\n');
      expect(r.stderr).to.equal('');
      const c = await client();
      try {
        const n = await c.query("select count(*)::int as n from items where name like 'copied-%'");
        expect(n.rows[0].n).to.equal(2);
      } finally {
        await c.end();
      }
    });
  });

  describe('cancel and disconnects', () => {
    it('cancels pg_sleep when psql is interrupted (CancelRequest with the proxy\'s key)', async () => {
      const child = spawn('psql', ['-X', '-c', 'select pg_sleep(30)'], { env: h.proxyEnv() });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const started = Date.now();
      await waitFor(async () => (await activeQueries(h, 'pg_sleep')) > 0);
      child.kill('SIGINT');
      const code = await new Promise((r) => child.on('exit', r));
      expect(Date.now() - started).to.be.lessThan(25_000);
      expect(stderr).to.match(/canceling statement due to user request/);
      expect(code).to.not.equal(0);
    });

    it('stops the server\'s work when the client disconnects in the middle of a result', async () => {
      const c = await RawClient.connect(h.proxyPort);
      c.write(serialize.query("select g, repeat('x', 200), pg_sleep(0.0001) from generate_series(1, 2000000) g"));
      await c.until((m) => m.name === 'dataRow');
      c.end();
      await waitFor(async () => (await activeQueries(h, 'generate_series')) === 0);
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', 'select 1']);
      expect(r.stdout).to.equal('1\n');
    });
  });

  describe('bad input', () => {
    it('closes a client that sends a malformed message with FATAL 08P01, records it, and keeps serving others', async () => {
      const other = await client();
      const c = await RawClient.connect(h.proxyPort);
      c.write(Buffer.from([0x01, 0, 0, 0, 4]));
      const msgs = await c.until((m) => m.name === 'error');
      const err = msgs[msgs.length - 1] as unknown as { severity: string; code: string; message: string };
      expect(err.severity).to.equal('FATAL');
      expect(err.code).to.equal('08P01');
      expect(err.message).to.match(/invalid message type 0x01/);
      await waitFor(async () => c.closed);
      const r = await other.query('select 1 as one');
      expect(r.rows).to.deep.equal([{ one: 1 }]);
      await other.end();
      await h.sidecar!.audit.flush();
      expect(readAudit(h.auditFile).some((e) => e.event === 'protocol-violation' && e.sqlstate === '08P01')).to.equal(true);
    });

    it('closes a client whose message length exceeds the limit', async () => {
      const c = await RawClient.connect(h.proxyPort);
      const b = Buffer.alloc(5);
      b[0] = 0x51;
      b.writeInt32BE(0x7ffffff0, 1);
      c.write(b);
      const msgs = await c.until((m) => m.name === 'error');
      expect((msgs[msgs.length - 1] as unknown as { message: string }).message).to.match(/exceeds the limit/);
    });

    it('refuses a Query message whose string is not terminated', async () => {
      const c = await RawClient.connect(h.proxyPort);
      c.write(Buffer.from([0x51, 0, 0, 0, 7, 0x61, 0x62, 0x63]));
      const msgs = await c.until((m) => m.name === 'error');
      expect((msgs[msgs.length - 1] as unknown as { code: string }).code).to.equal('08P01');
    });

    it('survives random frontend messages from many clients and keeps serving a well-behaved one', async () => {
      const types = [0x42, 0x43, 0x44, 0x45, 0x46, 0x48, 0x50, 0x51, 0x53, 0x64, 0x63, 0x66, 0x70];
      const rnd = (n: number) => Math.floor(Math.random() * n);
      const clients = await Promise.all(Array.from({ length: 30 }, () => RawClient.connect(h.proxyPort)));
      for (const c of clients) {
        const parts: Buffer[] = [];
        for (let k = 0; k < 5; k++) {
          const body = Buffer.alloc(rnd(12));
          for (let i = 0; i < body.length; i++) body[i] = rnd(3) === 0 ? 0 : rnd(256);
          const head = Buffer.alloc(5);
          head[0] = types[rnd(types.length)];
          head.writeInt32BE(4 + body.length, 1);
          parts.push(head, body);
        }
        c.write(parts);
      }
      await new Promise((r) => setTimeout(r, 500));
      clients.forEach((c) => c.end());
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', 'select 40 + 2']);
      expect(r.stdout).to.equal('42\n');
    });

    it('refuses replication connections at startup', async () => {
      const c = await RawClient.connect(h.proxyPort, false);
      c.write(serialize.startup({ user: 'agent', database: 'payments', replication: 'database' }));
      const msgs = await c.until((m) => m.name === 'error');
      expect((msgs[msgs.length - 1] as unknown as { message: string }).message).to.match(/replication connections are not allowed/);
    });
  });

  describe('load', () => {
    it('serves 40 concurrent clients running queries at once', async () => {
      const clients = await Promise.all(Array.from({ length: 40 }, () => client()));
      try {
        const results = await Promise.all(
          clients.map(async (c, i) => {
            let sum = 0;
            for (let k = 0; k < 10; k++) sum += (await c.query('select $1::int as v', [i])).rows[0].v;
            return sum;
          }),
        );
        expect(results).to.deep.equal(Array.from({ length: 40 }, (_, i) => i * 10));
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    });
  });

  describe('audit, health, metrics', () => {
    it('writes one audit event per statement, with decision, rows and masked statement text', async () => {
      const c = await client();
      await c.query("select id from cards where pan = '4111 1111 1111 1111'");
      await c.query('drop table cards').catch(() => undefined);
      await c.end();
      await h.sidecar!.audit.flush();
      const events = readAudit(h.auditFile);
      const sel = events.find((e) => typeof e.statement === 'string' && e.statement.startsWith('select id from cards where pan'));
      expect(sel?.statement).to.equal("select id from cards where pan = '**** **** **** 1111'");
      expect(sel?.decision.action).to.equal('allow');
      expect(sel?.rows).to.equal(1);
      expect(sel?.tables).to.deep.equal(['public.cards']);
      const drop = events.find((e) => e.statement === 'drop table cards');
      expect(drop?.decision).to.include({ action: 'deny', rule: 'no-drops' });
      expect(drop?.sqlstate).to.equal('42501');
      expect(events.some((e) => e.event === 'connection-start')).to.equal(true);
      expect(events.some((e) => e.event === 'connection-end')).to.equal(true);
    });

    it('writes one event per statement of a multi-statement query, each with its own rows', async () => {
      const c = await client();
      const err = (await c.query('select id from items where id <= 3; select id from items where id <= 2; select 1 / 0; select 4').catch((e: unknown) => e)) as pg.DatabaseError;
      expect(err.code).to.equal('22012');
      await c.end();
      await h.sidecar!.audit.flush();
      const events = readAudit(h.auditFile).filter((e) => /^select (id from items where id <= [23]|1 \/ 0|4)$/.test(e.statement ?? ''));
      expect(events.map((e) => [e.statement, e.rows, e.sqlstate])).to.deep.equal([
        ['select id from items where id <= 3', 3, undefined],
        ['select id from items where id <= 2', 2, undefined],
        ['select 1 / 0', 0, '22012'],
        ['select 4', 0, '22012'],
      ]);
    }).timeout(10_000);

    it('writes an audit file that `agentgate audit verify` accepts', async () => {
      await h.sidecar!.audit.flush();
      const { stdout } = await run('node', ['dist/cli/main.js', 'audit', 'verify', h.auditFile]);
      expect(stdout).to.match(/^ok: \d+ events, chain intact/);
    });

    it('reports ready on /healthz/ready and exports the proxy metrics', async () => {
      const ready = await fetch(`http://127.0.0.1:${h.healthPort}/healthz/ready`);
      expect(ready.status).to.equal(200);
      const live = await fetch(`http://127.0.0.1:${h.healthPort}/healthz/live`);
      expect(live.status).to.equal(200);
      const text = await (await fetch(`http://127.0.0.1:${h.metricsPort}/metrics`)).text();
      expect(text).to.match(/agentgate_pg_statements_total\{connection="payments",decision="deny"\} [1-9]/);
      expect(text).to.match(/agentgate_pg_statement_duration_seconds_count\{connection="payments"\} [1-9]/);
      expect(text).to.match(/agentgate_pg_bytes_total\{connection="payments",direction="server_to_client"\} [1-9]/);
      expect(text).to.match(/agentgate_pg_client_connections\{connection="payments"\} \d/);
    });
  });

  describe('upstream credentials', () => {
    it('answers a wrong upstream password with an ErrorResponse naming the connection, and picks up the fixed file', async () => {
      fs.writeFileSync(h.passwordFile, 'wrong-password\n');
      try {
        const err = (await client().catch((e: unknown) => e)) as pg.DatabaseError;
        expect(err.message).to.match(/^agentgate: connection "payments": the database refused the sidecar's credentials: password authentication failed for user "agent_rw"/);
        expect(err.code).to.equal('08004');
      } finally {
        fs.writeFileSync(h.passwordFile, AGENT_PASSWORD + '\n');
      }
      const c = await client();
      expect((await c.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
      await c.end();
    });
  });
});

async function activeQueries(h: Harness, like: string): Promise<number> {
  const rows = await h.cluster.sql(`select count(*)::int as n from pg_stat_activity where state = 'active' and query like '%${like}%' and pid <> pg_backend_pid()`);
  return rows[0].n as number;
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
