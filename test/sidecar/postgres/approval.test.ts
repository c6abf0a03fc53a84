// `action: approve` through the PostgreSQL proxy, end to end: a real cluster, the
// sidecar in-process with an `approval` block, the real approval service started
// in-process (embedded PGlite store, a real OpenID provider for approvers, the
// service-account issuer double of test/approval for the sidecar's projected token),
// and real clients (psql, the pg driver, the approvers' CLI).

import { expect } from 'chai';
import fs from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import pg from 'pg';
import { startHarness, readAudit } from './harness.js';
import type { Harness } from './harness.js';
import { startHarness as startApproval, startIdp, POD_A } from '../../approval/harness.js';
import type { Harness as ApprovalHarness, Idp } from '../../approval/harness.js';
import { freePort } from '../../support/ports.js';
import { makeServerCertificate } from '../../support/postgres.js';

const POLICY = `apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: pg-approval-test }
spec:
  default: deny
  rules:
    - name: reads
      postgres: { statements: [select, show, set, transaction] }
      action: allow
    - name: price-fixes
      postgres: { statements: [update], tables: [public.items] }
      action: approve
      approval: { mode: defer, scope: window, windowMinutes: 5 }
    - name: card-updates
      description: changing a card needs a human
      postgres: { statements: [update] }
      action: approve
      approval: { mode: wait, waitSeconds: 30 }
    - name: quick-inserts
      postgres: { statements: [insert] }
      action: approve
      approval: { mode: wait, waitSeconds: 2 }
    - name: deferred-deletes
      postgres: { statements: [delete] }
      action: approve
      approval: { mode: defer }
`;

const CLI = path.resolve('dist/cli/main.js');

interface Held {
  id: string;
  notice: string;
}

describe('PostgreSQL proxy with the approval service (real cluster, real service)', function () {
  this.timeout(90_000);
  let h: Harness;
  let idp: Idp;
  let ap: ApprovalHarness;
  let tokenFile: string;

  before(async () => {
    h = await startHarness();
    idp = await startIdp();
    ap = await startApproval(idp);
    tokenFile = path.join(h.dir, 'approval-token');
    fs.writeFileSync(tokenFile, (await idp.sa.token(POD_A)) + '\n');
    fs.writeFileSync(h.policyFile, POLICY);
    await h.startProxy({ extraTop: `approval: { url: ${ap.url}, tokenFile: ${tokenFile}, timeoutSeconds: 3 }` });
  });
  after(async () => {
    await h?.stop();
    await ap?.close();
    await idp?.close();
  });

  async function client(): Promise<pg.Client & { held: Promise<Held> }> {
    const c = new pg.Client(h.clientConfig()) as pg.Client & { held: Promise<Held> };
    c.on('error', () => {});
    c.held = new Promise((resolve) => {
      c.on('notice', (n) => {
        const m = /approval ([0-9a-f-]{36})/.exec(n.detail ?? '');
        if (m) resolve({ id: m[1]!, notice: n.message ?? '' });
      });
    });
    await c.connect();
    return c;
  }

  async function decide(id: string, verdict: 'approve' | 'deny', reason: string, who = 'alice@example.com') {
    const r = await ap.call(await ap.approverToken(who), 'POST', `/v1/approvals/${id}/${verdict}`, { reason });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body;
  }

  async function stateOf(id: string): Promise<string> {
    const r = await ap.call(await ap.approverToken('alice@example.com'), 'GET', `/v1/approvals/${id}`);
    return r.body.state;
  }

  async function eventually(what: () => Promise<boolean>, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await what())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function failure(p: Promise<unknown>): Promise<pg.DatabaseError> {
    try {
      await p;
    } catch (err) {
      return err as pg.DatabaseError;
    }
    throw new Error('expected the statement to fail');
  }

  it('holds an UPDATE, tells the client how to approve, and runs it once approved', async () => {
    const c = await client();
    try {
      const running = c.query("update cards set holder = 'Ada L.' where id = 1");
      const held = await c.held;
      expect(held.notice).to.equal(
        `agentgate: statement held for approval by rule "card-updates": approval ${held.id} is needed: an approver runs \`agentgate approvals approve ${held.id}\`; waiting up to 30s`,
      );
      expect(await stateOf(held.id)).to.equal('pending');
      await decide(held.id, 'approve', 'ticket PAY-1');
      const r = await running;
      expect(r.rowCount).to.equal(1);
      expect((await c.query('select holder from cards where id = 1')).rows).to.deep.equal([{ holder: 'Ada L.' }]);
      expect(await stateOf(held.id)).to.equal('used');
      // The audit writer appends asynchronously: wait for the event to reach the file.
      await eventually(async () => readAudit(h.auditFile).some((e) => e.statement === "update cards set holder = 'Ada L.' where id = 1"));
      const ev = readAudit(h.auditFile).find((e) => e.statement === "update cards set holder = 'Ada L.' where id = 1");
      expect(ev?.approval).to.deep.equal({ id: held.id, approver: 'alice@example.com', state: 'used' });
      expect(ev?.decision).to.include({ action: 'approve', rule: 'card-updates' });
      expect(ev?.decision.reason).to.equal(`approval ${held.id} was approved by alice@example.com (rule "card-updates")`);
      expect(ev?.sqlstate).to.equal(undefined);
    } finally {
      await c.end();
    }
  });

  it('holds a parameterized UPDATE at Execute (extended protocol) and runs it once approved', async () => {
    const c = await client();
    try {
      const running = c.query('update cards set holder = $1 where id = $2', ['Bob B.', 2]);
      const held = await c.held;
      // The approver sees the values the statement runs with; a `once` approval is bound to them.
      const req = await ap.call(await ap.approverToken('alice@example.com'), 'GET', `/v1/approvals/${held.id}`);
      expect(req.body.operation).to.equal("update cards set holder = $1 where id = $2\n-- with $1 = 'Bob B.', $2 = '2'");
      await decide(held.id, 'approve', 'ok');
      expect((await running).rowCount).to.equal(1);
      expect((await c.query('select holder from cards where id = 2')).rows).to.deep.equal([{ holder: 'Bob B.' }]);
    } finally {
      await c.end();
    }
  });

  it('refuses a denied statement with 42501 naming the approval, the approver and the reason; the connection stays usable', async () => {
    const c = await client();
    try {
      const running = failure(c.query("update cards set holder = 'Mallory' where id = 1"));
      const held = await c.held;
      await decide(held.id, 'deny', 'no ticket', 'bob@example.com');
      const err = await running;
      expect(err.code).to.equal('42501');
      expect(err.message).to.equal(`agentgate: permission denied: approval ${held.id} was denied by bob@example.com: no ticket (rule "card-updates")`);
      expect((await c.query('select holder from cards where id = 1')).rows).to.deep.equal([{ holder: 'Ada L.' }]);
      await eventually(async () => readAudit(h.auditFile).some((e) => e.approval?.id === held.id && e.protocol === 'postgres'));
      const ev = readAudit(h.auditFile).find((e) => e.approval?.id === held.id && e.protocol === 'postgres');
      expect(ev?.approval).to.deep.equal({ id: held.id, approver: 'bob@example.com', state: 'denied' });
      expect(ev?.sqlstate).to.equal('42501');
    } finally {
      await c.end();
    }
  });

  it('aborts the transaction when a held statement is denied, so COMMIT becomes ROLLBACK', async () => {
    const c = await client();
    try {
      await c.query('begin');
      await c.query("set local application_name = 'tx'");
      const running = failure(c.query("update cards set holder = 'Eve' where id = 1"));
      await decide((await c.held).id, 'deny', 'no');
      expect((await running).code).to.equal('42501');
      const commit = await c.query('commit');
      expect(commit.command).to.equal('ROLLBACK');
    } finally {
      await c.end();
    }
  });

  it('refuses with 42501 when nobody decides within the rule\'s waitSeconds, and cancels the request', async () => {
    const c = await client();
    try {
      const running = failure(c.query("insert into items(name, price) values ('held', 1)"));
      const held = await c.held;
      const err = await running;
      expect(err.code).to.equal('42501');
      expect(err.message).to.equal(
        `agentgate: approval ${held.id} was not decided within 2s (rule "quick-inserts"); the statement was not run and the request is cancelled`,
      );
      expect(await stateOf(held.id)).to.equal('cancelled');
      expect((await c.query("select count(*)::int as n from items where name = 'held'")).rows).to.deep.equal([{ n: 0 }]);
    } finally {
      await c.end();
    }
  });

  it('refuses a defer statement at once with the approval id, and lets the same statement through after approval', async () => {
    const c = await client();
    try {
      const sql = 'delete from items where id = 1000';
      const err = await failure(c.query(sql));
      expect(err.code).to.equal('42501');
      const id = /approval ([0-9a-f-]{36}) is needed/.exec(err.message)?.[1];
      expect(err.message).to.equal(
        `agentgate: approval required by rule "deferred-deletes": approval ${id} is needed: an approver runs \`agentgate approvals approve ${id}\`; run the statement again once it is approved`,
      );
      // A retry before the decision finds the same pending request, not a new one.
      const again = await failure(c.query(sql));
      expect(again.message).to.include(`approval ${id} is needed`);
      await decide(id!, 'approve', 'cleanup');
      expect((await c.query(sql)).rowCount).to.equal(1);
      expect(await stateOf(id!)).to.equal('used');
      // `once`: the approval is spent; the next identical statement needs a new one.
      const third = await failure(c.query(sql));
      expect(third.message).to.not.include(id!);
    } finally {
      await c.end();
    }
  });

  it('lets the same identity repeat statements of the approved shape during the window (scope window, libpg-query fingerprint)', async () => {
    const c = await client();
    try {
      const err = await failure(c.query('update items set price = 10 where id = 1'));
      const id = /approval ([0-9a-f-]{36}) is needed/.exec(err.message)![1]!;
      await decide(id, 'approve', 'price fixes today');
      expect((await c.query('update items set price = 10 where id = 1')).rowCount).to.equal(1);
      // Other literals, same statement shape: covered by the window.
      expect((await c.query('update items set price = 20 where id = 2')).rowCount).to.equal(1);
      expect(await stateOf(id)).to.equal('approved');
      // Another shape needs its own approval.
      const other = await failure(c.query("update items set name = 'x' where id = 1"));
      expect(other.code).to.equal('42501');
      expect(other.message).to.not.include(id);
      const metrics = await (await fetch(`http://127.0.0.1:${h.metricsPort}/metrics`)).text();
      expect(metrics).to.match(/agentgate_pg_approval_holds_total\{connection="payments",result="approved"\} [1-9]/);
      expect(metrics).to.match(/agentgate_pg_approval_holds_total\{connection="payments",result="deferred"\} [1-9]/);
    } finally {
      await c.end();
    }
  });

  it('refuses a held statement with 57014 on CancelRequest, and cancels the request', async () => {
    const c = await client();
    try {
      const running = failure(c.query("update cards set holder = 'X' where id = 2"));
      const held = await c.held;
      const key = c as unknown as { processID: number; secretKey: number };
      const sock = net.connect(h.proxyPort, '127.0.0.1');
      const cancel = Buffer.alloc(16);
      cancel.writeInt32BE(16, 0);
      cancel.writeInt32BE(80877102, 4);
      cancel.writeInt32BE(key.processID, 8);
      cancel.writeInt32BE(key.secretKey, 12);
      sock.end(cancel);
      sock.on('error', () => {});
      const err = await running;
      expect(err.code).to.equal('57014');
      expect(err.message).to.equal('canceling statement due to user request');
      expect(err.detail).to.equal(`agentgate: approval ${held.id} was cancelled`);
      expect(await stateOf(held.id)).to.equal('cancelled');
      expect((await c.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
    } finally {
      await c.end();
    }
  });

  it('cancels the request when the client disconnects while its statement is held, and records it', async () => {
    const c = await client();
    void c.query("update cards set holder = 'gone' where id = 2").catch(() => undefined);
    const held = await c.held;
    (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    await eventually(async () => (await stateOf(held.id)) === 'cancelled');
    await eventually(async () => readAudit(h.auditFile).some((e) => e.protocol === 'postgres' && e.approval?.id === held.id));
    const ev = readAudit(h.auditFile).find((e) => e.protocol === 'postgres' && e.approval?.id === held.id);
    expect(ev?.sqlstate).to.equal('57014');
    expect(ev?.decision.reason).to.equal(`the client disconnected while approval ${held.id} was pending (rule "card-updates")`);
  });

  it('runs a statement psql waits on once an approver approves it with `agentgate approvals approve`', async () => {
    const child = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', "update cards set holder = 'Ada' where id = 1"], { env: h.proxyEnv() });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number>((r) => child.on('exit', (code) => r(code ?? -1)));
    await eventually(async () => /approval [0-9a-f-]{36} is needed/.test(stderr));
    const id = /approval ([0-9a-f-]{36}) is needed/.exec(stderr)![1]!;
    expect(stderr).to.include(`NOTICE:  agentgate: statement held for approval by rule "card-updates": approval ${id} is needed`);
    const approverToken = path.join(h.dir, 'alice-token');
    fs.writeFileSync(approverToken, await ap.approverToken('alice@example.com'));
    const cli = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'approvals', 'approve', id, '--reason', 'PAY-2', '--server', ap.url, '--token-file', approverToken], (err, out, errOut) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: out + errOut }),
      ),
    );
    expect(cli.code, cli.out).to.equal(0);
    expect(await exited, stderr).to.equal(0);
    expect(stdout).to.equal('');
    expect(await stateOf(id)).to.equal('used');
  });

  describe('approval service down or answering nonsense', () => {
    before(async () => {
      await h.stopProxy();
      const port = await freePort();
      await h.startProxy({ extraTop: `approval: { url: http://127.0.0.1:${port}, tokenFile: ${tokenFile}, timeoutSeconds: 1 }` });
    });

    it('refuses when the service answers something that is not an approval (a login page), naming the service', async () => {
      const page = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>sign in</html>'));
      await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
      const url = `http://127.0.0.1:${(page.address() as net.AddressInfo).port}`;
      await h.stopProxy();
      await h.startProxy({ extraTop: `approval: { url: ${url}, tokenFile: ${tokenFile}, timeoutSeconds: 1 }` });
      const c = await client();
      try {
        const err = await failure(c.query("update cards set holder = 'Z' where id = 1"));
        expect(err.code).to.equal('42501');
        expect(err.message).to.equal(
          `agentgate: approval required by rule "card-updates", but no decision could be obtained: the approval service at ${url} answered HTTP 200 with something that is not JSON; the operation is denied`,
        );
      } finally {
        await c.end();
        page.closeAllConnections();
        await new Promise<void>((r) => page.close(() => r()));
        await h.stopProxy();
        await h.startProxy({ extraTop: `approval: { url: http://127.0.0.1:${await freePort()}, tokenFile: ${tokenFile}, timeoutSeconds: 1 }` });
      }
    });

    it('trusts approval.caFile for the approval service\'s https origin (TLS completes; the nonsense answer is still refused)', async () => {
      const pki = fs.mkdtempSync(path.join(h.dir, 'pki-'));
      const cert = await makeServerCertificate(pki);
      const page = https.createServer({ cert: fs.readFileSync(cert.certFile), key: fs.readFileSync(cert.keyFile) }, (_req, res) =>
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"world"}'),
      );
      await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
      const url = `https://localhost:${(page.address() as net.AddressInfo).port}`;
      await h.stopProxy();
      await h.startProxy({ extraTop: `approval: { url: ${url}, tokenFile: ${tokenFile}, caFile: ${cert.caFile}, timeoutSeconds: 2 }` });
      const c = await client();
      try {
        const err = await failure(c.query("update cards set holder = 'Z' where id = 1"));
        expect(err.message).to.equal(
          `agentgate: approval required by rule "card-updates", but no decision could be obtained: the approval service at ${url} answered with a body that is not an approval request; the operation is denied`,
        );
      } finally {
        await c.end();
        page.closeAllConnections();
        await new Promise<void>((r) => page.close(() => r()));
        await h.stopProxy();
        await h.startProxy({ extraTop: `approval: { url: http://127.0.0.1:${await freePort()}, tokenFile: ${tokenFile}, timeoutSeconds: 1 }` });
      }
    });

    it('refuses a statement that needs approval with a clear message (fail closed), and allowed statements still run', async () => {
      const c = await client();
      try {
        const err = await failure(c.query("update cards set holder = 'Z' where id = 1"));
        expect(err.code).to.equal('42501');
        expect(err.message).to.match(
          /^agentgate: approval required by rule "card-updates", but no decision could be obtained: the approval service at http:\/\/127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\); the operation is denied$/,
        );
        expect((await c.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
      } finally {
        await c.end();
      }
    });
  });
});
