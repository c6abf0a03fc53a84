// The approvers' CLI and the service command, run as the shipped binary
// (`node dist/cli/main.js …`) against a running service.

import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ApprovalClient } from '../../approval/client.js';
import { freePort } from '../support/ports.js';
import { POD_A, UPDATE_SQL, configYaml, startHarness, startIdp } from './harness.js';
import type { Harness, Idp } from './harness.js';

const run = promisify(execFile);
const MAIN = path.resolve('dist/cli/main.js');

async function agentgate(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { env: { ...process.env, AGENTGATE_LOG_LEVEL: 'error', ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const base = { protocol: 'postgres' as const, connection: 'payments', rule: 'approve-card-updates', approverGroups: ['payments-approvers'] };

describe('agentgate approvals (approvers\' CLI)', function () {
  this.timeout(60_000);
  let idp: Idp;
  let h: Harness;
  let a: ApprovalClient;
  let aliceFile: string;
  let carolFile: string;
  const as = (file: string, ...args: string[]) => agentgate(['approvals', ...args, '--server', h.url, '--token-file', file]);

  before(async () => {
    idp = await startIdp();
    h = await startHarness(idp, { name: 'cli' });
    a = await h.sidecar(POD_A);
    aliceFile = path.join(idp.dir, 'alice.token');
    carolFile = path.join(idp.dir, 'carol.token');
    fs.writeFileSync(aliceFile, `${await h.approverToken('alice@example.com')}\n`);
    fs.writeFileSync(carolFile, await h.approverToken('carol@example.com'));
  });
  after(async () => {
    await h?.close();
    await idp?.close();
  });

  it('list --state pending prints a table with the pending request', async () => {
    const r = await a.create({ ...base, operation: UPDATE_SQL });
    const out = await as(aliceFile, 'list', '--state', 'pending');
    expect(out.code).to.equal(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0].split(/\s{2,}/)).to.deep.equal(['ID', 'STATE', 'AGE', 'REQUESTER', 'CONNECTION', 'RULE', 'SCOPE', 'OPERATION']);
    const row = lines.find((l) => l.startsWith(r.id));
    expect(row?.split(/\s{2,}/).slice(3)).to.deep.equal([
      'payments/agent-a-5f7d', 'postgres/payments', 'approve-card-updates', 'once', "UPDATE cards SET pan = '**** **** **** 1111' WHERE id = 7",
    ]);
  });

  it('list -o json prints the requests as JSON', async () => {
    const out = await as(aliceFile, 'list', '-o', 'json');
    const items = JSON.parse(out.stdout) as { id: string; state: string }[];
    expect(items.length).to.be.greaterThan(0);
    expect(items.every((i) => typeof i.id === 'string')).to.equal(true);
  });

  it('show ID prints the request with its masked operation', async () => {
    const r = await a.create({ ...base, operation: 'DELETE FROM cards WHERE pan = 5500000000000004', justification: 'OPS-9' });
    const out = await as(aliceFile, 'show', r.id);
    expect(out.code).to.equal(0);
    expect(out.stdout).to.include(`ID:            ${r.id}\n`);
    expect(out.stdout).to.include('Justification: OPS-9\n');
    expect(out.stdout).to.include('Operation:\n  DELETE FROM cards WHERE pan = ************0004\n');
  });

  it('approve ID --reason R approves, and the waiting sidecar learns it', async () => {
    const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 1 WHERE id = 1' });
    const waiting = a.waitForDecision(r.id, { timeoutMs: 30_000 });
    const out = await as(aliceFile, 'approve', r.id, '--reason', 'OPS-42');
    expect(out.code).to.equal(0);
    expect(out.stdout).to.include('State:         approved\n');
    expect(out.stdout).to.match(/Decisions:\n {2}\S+ {2}approve {2}alice@example\.com: OPS-42\n/);
    expect((await waiting).state).to.equal('approved');
  });

  it('deny ID --reason R denies', async () => {
    const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 2 WHERE id = 2' });
    const out = await as(aliceFile, 'deny', r.id, '--reason', 'freeze', '-o', 'json');
    expect(JSON.parse(out.stdout).state).to.equal('denied');
  });

  it('deny without --reason is a usage error: exit 2, one line', async () => {
    const out = await as(aliceFile, 'deny', 'some-id');
    expect([out.code, out.stderr]).to.deep.equal([2, 'agentgate approvals: deny needs --reason R (see agentgate approvals --help)\n']);
  });

  it('prints the service\'s refusal and exits 1 when the approver is not in the rule\'s groups', async () => {
    const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 3 WHERE id = 3' });
    const out = await as(carolFile, 'approve', r.id);
    expect(out.code).to.equal(1);
    expect(out.stderr).to.equal('agentgate approvals: not-an-approver: carol@example.com is not in an approver group for rule approve-card-updates (needs one of: payments-approvers)\n');
  });

  it('exits 1 with the cause when the service cannot be reached', async () => {
    const port = await freePort();
    const out = await agentgate(['approvals', 'list', '--server', `http://127.0.0.1:${port}`, '--token-file', aliceFile]);
    expect([out.code, out.stderr]).to.deep.equal([1, `agentgate approvals: cannot reach the approval service at http://127.0.0.1:${port}: ECONNREFUSED\n`]);
  });

  it('refuses an unknown subcommand', async () => {
    const out = await as(aliceFile, 'approve-all');
    expect([out.code, out.stderr]).to.deep.equal([2, "agentgate approvals: unknown subcommand 'approve-all' (list, show, approve or deny) (see agentgate approvals --help)\n"]);
  });
});

describe('agentgate approval (the service command)', function () {
  this.timeout(120_000);
  let idp: Idp;
  before(async () => {
    idp = await startIdp();
  });
  after(async () => idp?.close());

  it('reports a config mistake with file:line:col and exits 1', async () => {
    const file = path.join(idp.dir, 'bad.yaml');
    fs.writeFileSync(file, `${configYaml(idp)}ttlSeconds: soon\n`);
    const out = await agentgate(['approval', '--config', file]);
    expect(out.code).to.equal(1);
    expect(out.stderr).to.match(new RegExp(`^agentgate approval: ${file.replace(/[.]/g, '\\.')}:\\d+:\\d+: .*ttlSeconds`));
  });

  it('needs --config', async () => {
    expect(await agentgate(['approval'])).to.deep.include({ code: 2, stderr: 'agentgate approval: --config FILE is required (see agentgate approval --help)\n' });
  });

  it('serves on embedded storage persisted to a directory, and stops cleanly on SIGTERM', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const file = path.join(idp.dir, 'embedded.yaml');
    fs.writeFileSync(file, `${configYaml(idp)}storage:\n  embedded:\n    dir: ./approvals-data\n`);
    const child = spawn(process.execPath, [MAIN, 'approval', '--config', file, '--listen', `127.0.0.1:${port}`, '--metrics', `127.0.0.1:${metricsPort}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      let ready = false;
      for (let i = 0; i < 300 && !ready; i++) {
        ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
        if (!ready) await new Promise((r) => setTimeout(r, 200));
      }
      expect(ready, stderr).to.equal(true);
      expect(((await (await fetch(`http://127.0.0.1:${port}/openapi.json`)).json()) as { openapi: string }).openapi).to.match(/^3\./);
      expect(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).to.include('agentgate_approval_pending');
      expect(fs.existsSync(path.join(idp.dir, 'approvals-data', 'PG_VERSION'))).to.equal(true);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).to.equal(0);
  });
});
