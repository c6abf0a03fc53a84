// The sidecar as a process: `agentgate sidecar --config`, config errors with
// file:line:col, readiness, and the SIGTERM drain (no new connections, the
// statement in flight finishes, then the connection closes).

import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import { startHarness, run, readAudit } from './harness.js';
import type { Harness } from './harness.js';
import { parseSidecarConfig, ConfigError } from '../../../sidecar/config.js';

const CLI = 'dist/cli/main.js';

function configErrors(yaml: string): string[] {
  try {
    parseSidecarConfig(yaml, 'sidecar.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('sidecar config', () => {
  const base = 'policy: { file: p.yaml }\naudit: { file: a.jsonl }\n';

  it('accepts the documented example, filling defaults', () => {
    const c = parseSidecarConfig(
      `postgres:
  - name: payments
    listen: 127.0.0.1:15432
    upstream:
      host: 127.0.0.1
      port: 5432
      database: payments
      user: agent_ro
      passwordFile: ./secrets/payments-password
      tls: { mode: disable }
${base}`,
      '/etc/agentgate/sidecar.yaml',
    );
    expect(c.postgres[0].upstream.passwordFile).to.equal('/etc/agentgate/secrets/payments-password');
    expect(c.postgres[0].clientAuth.mode).to.equal('trust');
    expect(c.health).to.deep.equal({ host: '0.0.0.0', port: 15021 });
    expect(c.metrics).to.deep.equal({ host: '0.0.0.0', port: 15090 });
  });

  it('gives each connection without listen the next port from 15432, in config order', () => {
    const conn = (n: string) => `  - name: ${n}\n    upstream: { host: db, database: d, user: u }\n`;
    const c = parseSidecarConfig(`postgres:\n${conn('a')}${conn('b')}${base}`, 's.yaml');
    expect(c.postgres.map((p) => p.listen.port)).to.deep.equal([15432, 15433]);
  });

  it('reports an unknown key and a bad enum value with file:line:col', () => {
    const errors = configErrors(`postgres:
  - name: payments
    upstream:
      host: db
      database: payments
      usr: agent
      tls: { mode: prefer }
${base}`);
    expect(errors).to.deep.equal([
      "sidecar.yaml:6:7: postgres[0].upstream.usr: unknown key (did you mean 'user'?)",
      "sidecar.yaml:7:20: postgres[0].upstream.tls.mode: unknown value 'prefer' (expected one of: disable, require, verify-full)",
      "sidecar.yaml:4:7: postgres[0].upstream: missing required key 'user'",
    ]);
  });

  it('requires caFile for verify-full and refuses duplicate names and ports', () => {
    const errors = configErrors(`postgres:
  - name: a
    listen: 127.0.0.1:6000
    upstream: { host: db, database: d, user: u, tls: { mode: verify-full } }
  - name: a
    listen: 127.0.0.1:6000
    upstream: { host: db, database: d, user: u }
${base}`);
    expect(errors).to.deep.equal([
      'sidecar.yaml:4:54: postgres[0].upstream.tls: verify-full needs caFile (the CA that signed the server certificate)',
      "sidecar.yaml:5:11: postgres[1].name: duplicate connection name 'a'",
      "sidecar.yaml:6:13: postgres[1].listen: port 6000 is already used by connection 'a'",
    ]);
  });

  it('fills the approval block\'s defaults: the projected token of audience agentgate, 5 s calls, 30 s polls', () => {
    const c = parseSidecarConfig(`postgres: [{ name: p, upstream: { host: db, database: d, user: u } }]\napproval: { url: https://approvals.agentgate:8080, caFile: ca.crt }\n${base}`, '/etc/agentgate/sidecar.yaml');
    expect(c.approval).to.deep.equal({
      url: 'https://approvals.agentgate:8080',
      tokenFile: '/var/run/secrets/agentgate/approval/token',
      caFile: '/etc/agentgate/ca.crt',
      timeoutSeconds: 5,
      pollSeconds: 30,
    });
  });

  it('refuses an approval url that is not http(s) and a caFile with a plain-http url', () => {
    const conn = 'postgres: [{ name: p, upstream: { host: db, database: d, user: u } }]\n';
    expect(configErrors(`${conn}approval: { url: approvals:8080 }\n${base}`)).to.deep.equal([
      "sidecar.yaml:2:18: approval.url: invalid value 'approvals:8080' (http(s)://host:port)",
    ]);
    expect(configErrors(`${conn}approval: { url: http://approvals:8080, caFile: ca.crt }\n${base}`)).to.deep.equal([
      'sidecar.yaml:2:49: approval.caFile: caFile is only used with an https url',
    ]);
  });

  it('exits 1 with the errors when the CLI is given a bad config, and 2 without --config', async () => {
    const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'agentgate-cfg-'));
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'postgres: 3\n' + base);
    const bad = await run('node', [CLI, 'sidecar', '--config', file]).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).to.equal(1);
    expect((bad as { stderr: string }).stderr).to.equal(`${file}:1:11: postgres: expected a list, got a number\n`);
    const usage = await run('node', [CLI, 'sidecar']).catch((e: { code: number; stderr: string }) => e);
    expect((usage as { code: number }).code).to.equal(2);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('agentgate sidecar (process)', function () {
  this.timeout(60_000);
  let h: Harness;
  let child: ChildProcess | undefined;
  let cfgFile: string;

  before(async () => {
    h = await startHarness();
    cfgFile = path.join(h.dir, 'sidecar.yaml');
    fs.writeFileSync(
      cfgFile,
      `postgres:
  - name: payments
    listen: 127.0.0.1:${h.proxyPort}
    upstream: { host: 127.0.0.1, port: ${h.cluster.port}, database: payments, user: agent_rw, passwordFile: ${h.passwordFile} }
policy: { file: ${h.policyFile} }
audit: { file: ${h.auditFile} }
health: { listen: 127.0.0.1:${h.healthPort} }
metrics: { listen: 127.0.0.1:${h.metricsPort} }
drainSeconds: 10
`,
    );
  });
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    child = undefined;
  });
  after(async () => h?.stop());

  async function startCli(): Promise<ChildProcess> {
    const c = spawn('node', [CLI, 'sidecar', '--config', cfgFile], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, AGENTGATE_LOG_LEVEL: 'warn' } });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${h.healthPort}/healthz/ready`).then((r) => r.status === 200, () => false);
      if (ok) return c;
      if (c.exitCode !== null || Date.now() > deadline) throw new Error('sidecar did not become ready');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('validates a config with --check', async () => {
    const { stdout } = await run('node', [CLI, 'sidecar', '--config', cfgFile, '--check']);
    expect(stdout).to.equal(`${cfgFile}: ok (1 postgres connection(s))\n`);
  });

  it('fails --check with exit 1 and the policy errors at file:line:col when the policy is invalid', async () => {
    const badPolicy = path.join(h.dir, 'bad-policy.yaml');
    fs.writeFileSync(badPolicy, 'apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: broken }\nspec:\n  default: maybe\n  rules: []\n');
    const badCfg = path.join(h.dir, 'sidecar-bad-policy.yaml');
    fs.writeFileSync(badCfg, fs.readFileSync(cfgFile, 'utf8').replace(`policy: { file: ${h.policyFile} }`, `policy: { file: ${badPolicy} }`));
    const r = await run('node', [CLI, 'sidecar', '--config', badCfg, '--check']).then(
      () => ({ code: 0, stdout: '', stderr: '' }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.match(new RegExp(`^${badPolicy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5:12: .*maybe`));
  });

  it('is ready once the listener is up and the policy loaded, and serves queries', async () => {
    child = await startCli();
    const c = new pg.Client({ host: '127.0.0.1', port: h.proxyPort, user: 'agent', database: 'payments' });
    await c.connect();
    expect((await c.query('select pan from cards where id = 1')).rows).to.deep.equal([{ pan: '**** **** **** 1111' }]);
    await c.end();
  });

  it('drains on SIGTERM: the statement in flight finishes, then the connection closes and the process exits 0', async () => {
    child = await startCli();
    const c = new pg.Client({ host: '127.0.0.1', port: h.proxyPort, user: 'agent', database: 'payments' });
    c.on('error', () => {});
    await c.connect();
    const slow = c.query('select pg_sleep(1.5), 7 as answer');
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    const ready = await fetch(`http://127.0.0.1:${h.healthPort}/healthz/ready`).then((r) => r.status, () => 0);
    expect(ready).to.not.equal(200);
    const refused = await new pg.Client({ host: '127.0.0.1', port: h.proxyPort, user: 'agent', database: 'payments' }).connect().then(
      () => false,
      () => true,
    );
    expect(refused).to.equal(true);
    expect((await slow).rows).to.deep.equal([{ pg_sleep: '', answer: 7 }]);
    const next = (await c.query('select 1').catch((e: unknown) => e)) as Error;
    expect(next).to.be.instanceOf(Error);
    expect(await exited).to.equal(0);
    const events = readAudit(h.auditFile);
    expect(events[events.length - 1].event).to.equal('sidecar-stop');
  });

  it('is not ready while the policy file is invalid (every statement is refused)', async () => {
    const good = fs.readFileSync(h.policyFile, 'utf8');
    fs.writeFileSync(h.policyFile, 'apiVersion: agentgate.dev/v1\nkind: Nonsense\n');
    try {
      child = spawn('node', [CLI, 'sidecar', '--config', cfgFile], { stdio: 'ignore', env: { ...process.env, AGENTGATE_LOG_LEVEL: 'silent' } });
      let status = 0;
      for (let i = 0; i < 100 && status === 0; i++) {
        status = await fetch(`http://127.0.0.1:${h.healthPort}/healthz/ready`).then((r) => r.status, () => 0);
        if (status === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).to.equal(503);
      const body = await (await fetch(`http://127.0.0.1:${h.healthPort}/healthz/ready`)).text();
      expect(body).to.match(/^not ready: no valid policy loaded from /);
      const c = new pg.Client({ host: '127.0.0.1', port: h.proxyPort, user: 'agent', database: 'payments' });
      await c.connect();
      const err = (await c.query('select 1').catch((e: unknown) => e)) as pg.DatabaseError;
      expect(err.code).to.equal('42501');
      await c.end();
    } finally {
      fs.writeFileSync(h.policyFile, good);
    }
  });
});
