// Prepared statements and portals as the server sees them: the proxy's record of each
// changes only when the server confirms (ParseComplete, BindComplete, CloseComplete),
// follows the server's skip-to-Sync after an error, and refuses any protocol use of a
// name it has no decision for (SQL PREPARE, DECLARE, DEALLOCATE, DISCARD). Raw protocol
// messages against a real cluster, with an approval service configured but unreachable,
// so a statement that needs approval can be prepared and is refused at each Execute.

import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { serialize } from 'pg-protocol';
import { startHarness, readAudit } from './harness.js';
import type { Harness } from './harness.js';
import { RawClient, names, errorsOf, rowsOf } from './raw-client.js';
import { freePort } from '../../support/ports.js';

const POLICY = `apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: statement-state-test }
spec:
  default: deny
  masking:
    columns: [public.cards.cvv]
  rules:
    - name: work
      postgres: { statements: [select, insert, update, set, show, transaction] }
      action: allow
    - name: deletes-need-a-human
      postgres: { statements: [delete, do] }
      action: approve
      approval: { mode: wait, waitSeconds: 2 }
`;

/** Audit events matching `pred`, once the writer (which appends asynchronously) has written at least one. */
async function audited(file: string, pred: (e: Record<string, any>) => boolean): Promise<Record<string, any>[]> {
  for (let i = 0; i < 100; i++) {
    const found = readAudit(file).filter(pred);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  return [];
}

const APPROVAL_REFUSED = /^agentgate: approval required by rule "deletes-need-a-human", but no decision could be obtained: /;

describe('PostgreSQL proxy: prepared statements and portals follow the server (real cluster)', function () {
  this.timeout(60_000);
  let h: Harness;

  before(async () => {
    h = await startHarness();
    await h.cluster.sql('set role agent_rw; create table victims(id int); insert into victims values (1), (2), (3);', 'payments');
    fs.writeFileSync(h.policyFile, POLICY);
    const tokenFile = path.join(h.dir, 'approval-token');
    fs.writeFileSync(tokenFile, 'not-a-real-token\n');
    await h.startProxy({ extraTop: `approval: { url: http://127.0.0.1:${await freePort()}, tokenFile: ${tokenFile}, timeoutSeconds: 1 }` });
  });
  after(async () => {
    await h?.stop();
  });

  const victims = async (): Promise<number[]> => (await h.cluster.sql('select id from victims order by id', 'payments')).map((r) => r.id as number);
  let c: RawClient;
  beforeEach(async () => {
    await h.cluster.sql('delete from victims; insert into victims values (1), (2), (3);', 'payments');
    c = await RawClient.connect(h.proxyPort);
  });
  afterEach(() => c.end());

  describe('Parse of a name that exists', () => {
    it('refuses a second Parse of a named statement with 42P05, and the first statement stays what runs and is decided', async () => {
      const [first] = await c.batch([serialize.parse({ name: 's1', text: 'delete from victims' }), serialize.sync()]);
      expect(names(first)).to.deep.equal(['parseComplete', 'readyForQuery']);
      const [second] = await c.batch([serialize.parse({ name: 's1', text: 'select 1' }), serialize.sync()]);
      expect(errorsOf(second)).to.deep.equal([{ code: '42P05', message: 'prepared statement "s1" already exists' }]);
      const [run] = await c.batch([serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync()]);
      const errs = errorsOf(run);
      expect(errs).to.have.length(1);
      expect(errs[0].code).to.equal('42501');
      expect(errs[0].message).to.match(APPROVAL_REFUSED);
      expect(await victims()).to.deep.equal([1, 2, 3]);
      const deletes = await audited(h.auditFile, (e) => e.statement === 'delete from victims');
      expect(deletes.map((e) => e.decision.action)).to.include('approve');
      expect(readAudit(h.auditFile).some((e) => e.statement === 'select 1' && e.decision.action === 'allow')).to.equal(false);
    });

    it('answers the same when all three batches arrive in one write (the second batch waits for the first)', async () => {
      const got = await c.batch(
        [
          serialize.parse({ name: 's1', text: 'delete from victims' }),
          serialize.sync(),
          serialize.parse({ name: 's1', text: 'select 1' }),
          serialize.sync(),
          serialize.bind({ statement: 's1' }),
          serialize.execute({}),
          serialize.sync(),
        ],
        3,
      );
      expect(names(got[0])).to.deep.equal(['parseComplete', 'readyForQuery']);
      expect(errorsOf(got[1])).to.deep.equal([{ code: '42P05', message: 'prepared statement "s1" already exists' }]);
      expect(errorsOf(got[2])[0].message).to.match(APPROVAL_REFUSED);
      expect(await victims()).to.deep.equal([1, 2, 3]);
    });

    it('lets the unnamed statement be replaced by a later Parse, as PostgreSQL does', async () => {
      const got = await c.batch([
        serialize.parse({ text: 'select 1' }),
        serialize.parse({ text: 'select 2' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      ]);
      expect(rowsOf(got[0])).to.deep.equal([['2']]);
    });
  });

  describe('messages the server skips after an error', () => {
    it('keeps a statement whose Close the server skipped after a failed Bind, so its next Execute is decided', async () => {
      const doInsert = 'do $$ begin insert into victims values (99); end $$';
      await c.batch([serialize.parse({ name: 's1', text: doInsert }), serialize.sync()]);
      const [failed] = await c.batch([serialize.bind({ statement: 's1', values: ['1'] }), serialize.close({ type: 'S', name: 's1' }), serialize.sync()]);
      expect(names(failed)).to.deep.equal(['error', 'readyForQuery']);
      expect(errorsOf(failed)[0].code).to.equal('08P01');
      const [run] = await c.batch([serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync()]);
      expect(names(run)).to.include('bindComplete');
      expect(errorsOf(run)[0].message).to.match(APPROVAL_REFUSED);
      expect(await victims()).to.deep.equal([1, 2, 3]);
      const events = await audited(h.auditFile, (e) => e.statement === doInsert);
      expect(events.some((e) => e.decision.action === 'approve')).to.equal(true);
    });

    it('keeps the statement when the failing batch and the next one arrive in one write', async () => {
      const doInsert = 'do $$ begin insert into victims values (98); end $$';
      await c.batch([serialize.parse({ name: 's2', text: doInsert }), serialize.sync()]);
      const got = await c.batch(
        [
          serialize.bind({ statement: 's2', values: ['1'] }),
          serialize.close({ type: 'S', name: 's2' }),
          serialize.sync(),
          serialize.bind({ statement: 's2' }),
          serialize.execute({}),
          serialize.sync(),
        ],
        2,
      );
      expect(names(got[0])).to.deep.equal(['error', 'readyForQuery']);
      expect(errorsOf(got[1])[0].message).to.match(APPROVAL_REFUSED);
      expect(await victims()).to.deep.equal([1, 2, 3]);
    });

    it('forgets a statement once the server confirms its Close', async () => {
      await c.batch([serialize.parse({ name: 's3', text: 'select 3' }), serialize.sync()]);
      const [closed] = await c.batch([serialize.close({ type: 'S', name: 's3' }), serialize.sync()]);
      expect(names(closed)).to.deep.equal(['closeComplete', 'readyForQuery']);
      const [bound] = await c.batch([serialize.bind({ statement: 's3' }), serialize.execute({}), serialize.sync()]);
      expect(errorsOf(bound)).to.deep.equal([{ code: '26000', message: 'prepared statement "s3" does not exist' }]);
      const [again] = await c.batch([serialize.parse({ name: 's3', text: 'select 33' }), serialize.bind({ statement: 's3' }), serialize.execute({}), serialize.sync()]);
      expect(rowsOf(again)).to.deep.equal([['33']]);
    });

    it('runs nothing of a batch after a refused Execute, like the server after its own error', async () => {
      const got = await c.batch([
        serialize.parse({ name: 'd1', text: 'delete from victims where id = 1' }),
        serialize.bind({ statement: 'd1' }),
        serialize.execute({}),
        serialize.parse({ text: 'insert into victims values (50)' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      ]);
      expect(names(got[0])).to.deep.equal(['parseComplete', 'bindComplete', 'error', 'readyForQuery']);
      expect(await victims()).to.deep.equal([1, 2, 3]);
    });
  });

  describe('names made by SQL, used at protocol level', () => {
    it('refuses a protocol Bind of a statement made with SQL PREPARE', async () => {
      const [prep] = await c.batch([serialize.query('prepare p as select holder, cvv from cards where id = 1')]);
      expect(errorsOf(prep)).to.deep.equal([]);
      const [run] = await c.batch([serialize.bind({ statement: 'p' }), serialize.execute({}), serialize.sync()]);
      expect(errorsOf(run)).to.deep.equal([
        { code: '26000', message: 'agentgate: prepared statement "p" is not known to the proxy: SQL PREPARE, DEALLOCATE or DISCARD changed the session\'s prepared statements; Close it and Parse it again' },
      ]);
      expect(rowsOf(run)).to.deep.equal([]);
    });

    it('refuses a Parse of a name SQL PREPARE may have taken', async () => {
      await c.batch([serialize.query('prepare p2 as select 1')]);
      const [parse] = await c.batch([serialize.parse({ name: 'p2', text: 'select 2' }), serialize.sync()]);
      expect(errorsOf(parse)).to.deep.equal([
        { code: '42P05', message: 'agentgate: prepared statement "p2" may already exist: SQL PREPARE, DEALLOCATE or DISCARD changed the session\'s prepared statements; Close it first' },
      ]);
      const [closeAndParse] = await c.batch([serialize.close({ type: 'S', name: 'p2' }), serialize.sync()]);
      expect(names(closeAndParse)).to.deep.equal(['closeComplete', 'readyForQuery']);
      const [run] = await c.batch([serialize.parse({ name: 'p2', text: 'select 2' }), serialize.bind({ statement: 'p2' }), serialize.execute({}), serialize.sync()]);
      expect(rowsOf(run)).to.deep.equal([['2']]);
    });

    it('stops trusting a statement after DEALLOCATE: one re-made by SQL PREPARE under its name is refused', async () => {
      await c.batch([serialize.parse({ name: 's4', text: 'select 1' }), serialize.sync()]);
      await c.batch([serialize.query('deallocate s4')]);
      await c.batch([serialize.query('prepare s4 as select holder, cvv from cards where id = 1')]);
      const [run] = await c.batch([serialize.bind({ statement: 's4' }), serialize.execute({}), serialize.sync()]);
      expect(errorsOf(run).map((e) => e.code)).to.deep.equal(['26000']);
      expect(rowsOf(run)).to.deep.equal([]);
    });

    it('refuses executing a DECLAREd cursor as a protocol portal', async () => {
      const [decl] = await c.batch([serialize.query('begin; declare cur cursor for select holder, cvv from cards')]);
      expect(errorsOf(decl)).to.deep.equal([]);
      const [run] = await c.batch([serialize.execute({ portal: 'cur' }), serialize.sync()]);
      expect(errorsOf(run)).to.deep.equal([
        { code: '34000', message: 'agentgate: portal "cur" is not known to the proxy: SQL DECLARE, CLOSE or DISCARD changed the session\'s portals; read a cursor with FETCH' },
      ]);
      expect(rowsOf(run)).to.deep.equal([]);
      // Like the server's own error, the refusal aborted the transaction block.
      const [fetch] = await c.batch([serialize.query('fetch all from cur')]);
      expect(errorsOf(fetch).map((e) => e.code)).to.deep.equal(['25P02']);
    });

    it('refuses an Execute of a portal that does not exist with the server\'s own 34000', async () => {
      const [run] = await c.batch([serialize.execute({ portal: 'nothing' }), serialize.sync()]);
      expect(errorsOf(run)).to.deep.equal([{ code: '34000', message: 'portal "nothing" does not exist' }]);
    });

    it('records one audit event per Execute the server ran, with its decision', async () => {
      const before = readAudit(h.auditFile).length;
      await c.batch([
        serialize.parse({ name: 'a1', text: 'select 41 as n' }),
        serialize.bind({ statement: 'a1' }),
        serialize.execute({}),
        serialize.bind({ statement: 'a1' }),
        serialize.execute({}),
        serialize.sync(),
      ]);
      await c.batch([serialize.query('select 1')]);
      // The writer appends to the file asynchronously.
      const ran = () => readAudit(h.auditFile).slice(before).filter((e) => e.statement === 'select 41 as n');
      for (let i = 0; i < 100 && ran().length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      const events = ran();
      expect(events.map((e) => [e.decision.action, e.rows])).to.deep.equal([
        ['allow', 1],
        ['allow', 1],
      ]);
    });
  });
});
