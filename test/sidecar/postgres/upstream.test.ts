// How the proxy reaches the real database: TLS modes against a cluster that only
// accepts TLS, each authentication method the server may ask for, an unreachable
// server, and how agents authenticate to the proxy in `token` mode.

import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { freePort } from '../../support/ports.js';

async function query(h: Harness, sql: string, extra: Partial<pg.ClientConfig> = {}): Promise<unknown[]> {
  const c = new pg.Client(h.clientConfig(extra));
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

async function connectError(h: Harness, extra: Partial<pg.ClientConfig> = {}): Promise<pg.DatabaseError> {
  const c = new pg.Client(h.clientConfig(extra));
  const err = await c.connect().then(
    () => undefined,
    (e: unknown) => e as pg.DatabaseError,
  );
  await c.end().catch(() => undefined);
  if (!err) throw new Error('expected the connection to be refused');
  return err;
}

describe('PostgreSQL proxy: upstream TLS (cluster accepts TLS only)', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ tls: true, requireTls: true });
  });
  afterEach(async () => h.stopProxy());
  after(async () => h?.stop());

  const upstream = (h: Harness, tls: string) => `
      host: 127.0.0.1
      port: ${h.cluster.port}
      database: payments
      user: agent_rw
      passwordFile: ${h.passwordFile}
      tls: ${tls}`;

  it('connects with tls.mode require and the session is encrypted', async () => {
    await h.startProxy({ upstream: upstream(h, '{ mode: require }') });
    const rows = await query(h, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    expect(rows).to.deep.equal([{ ssl: true }]);
  });

  it('connects with tls.mode verify-full when the CA signed the server certificate for the host name', async () => {
    await h.startProxy({ upstream: upstream(h, `{ mode: verify-full, caFile: ${h.cluster.caFile}, serverName: localhost }`) });
    const rows = await query(h, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    expect(rows).to.deep.equal([{ ssl: true }]);
  });

  it('refuses verify-full when the certificate does not name the host, with an error naming the connection', async () => {
    await h.startProxy({ upstream: upstream(h, `{ mode: verify-full, caFile: ${h.cluster.caFile}, serverName: db.example.com }`) });
    const err = await connectError(h);
    expect(err.message).to.match(/^agentgate: connection "payments": cannot reach the database: TLS with 127\.0\.0\.1:\d+ failed: .*db\.example\.com/);
  });

  it('refuses verify-full against a certificate from another CA', async () => {
    const otherCa = path.join(h.dir, 'other-ca.crt');
    const { makeServerCertificate } = await import('../../support/postgres.js');
    const d = fs.mkdtempSync(path.join(h.dir, 'ca-'));
    fs.copyFileSync((await makeServerCertificate(d)).caFile, otherCa);
    await h.startProxy({ upstream: upstream(h, `{ mode: verify-full, caFile: ${otherCa}, serverName: localhost }`) });
    const err = await connectError(h);
    expect(err.message).to.match(/TLS with .* failed: .*(self-signed|unable to verify|certificate)/i);
  });

  it('gets the server\'s refusal when tls.mode is disable and the server requires TLS', async () => {
    await h.startProxy({ upstream: upstream(h, '{ mode: disable }') });
    const err = await connectError(h);
    expect(err.message).to.match(/^agentgate: connection "payments": .*no pg_hba\.conf entry.*no encryption/);
  });
});

describe('PostgreSQL proxy: upstream authentication methods and failures', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ hba: ['host all md5user 127.0.0.1/32 md5', 'host all clearuser 127.0.0.1/32 password', 'host all trustuser 127.0.0.1/32 trust'] });
    await h.cluster.createUser('md5user', 'md5-pass', { encryption: 'md5' });
    await h.cluster.createUser('clearuser', 'clear-pass');
    await h.cluster.createUser('trustuser', 'unused');
    await h.cluster.sql('grant select on cards to md5user, clearuser, trustuser', 'payments');
  });
  afterEach(async () => h.stopProxy());
  after(async () => h?.stop());

  for (const [user, password] of [
    ['md5user', 'md5-pass'],
    ['clearuser', 'clear-pass'],
    ['trustuser', ''],
  ] as const) {
    it(`authenticates upstream as ${user} when the server asks for ${user.replace('user', '')}`, async () => {
      const file = path.join(h.dir, `${user}.pw`);
      fs.writeFileSync(file, password);
      await h.startProxy({ upstream: `\n      host: 127.0.0.1\n      port: ${h.cluster.port}\n      database: payments\n      user: ${user}\n      passwordFile: ${file}` });
      expect(await query(h, 'select current_user as u')).to.deep.equal([{ u: user }]);
    });
  }

  it('answers an unreachable server with an ErrorResponse naming the connection, and counts the failure', async () => {
    const closed = await freePort();
    await h.startProxy({ upstream: `\n      host: 127.0.0.1\n      port: ${closed}\n      database: payments\n      user: agent_rw\n      passwordFile: ${h.passwordFile}\n      connectTimeoutSeconds: 2` });
    const err = await connectError(h);
    expect(err.message).to.equal(`agentgate: connection "payments": cannot reach the database: could not connect to 127.0.0.1:${closed}: ECONNREFUSED`);
    expect(err.code).to.equal('08001');
    const metrics = await (await fetch(`http://127.0.0.1:${h.metricsPort}/metrics`)).text();
    expect(metrics).to.match(/agentgate_pg_upstream_connect_errors_total\{connection="payments",reason="connect"\} [1-9]/);
  });

  describe('client authentication in token mode', () => {
    let tokenFile: string;
    beforeEach(async () => {
      tokenFile = path.join(h.dir, 'agent-token');
      fs.writeFileSync(tokenFile, 'local-agent-token-123\n');
      await h.startProxy({ connection: `    clientAuth: { mode: token, tokenFile: ${tokenFile} }` });
    });

    it('accepts the agent token as the password', async () => {
      expect(await query(h, 'select 1 as one', { password: 'local-agent-token-123' })).to.deep.equal([{ one: 1 }]);
    });

    it('refuses any other password with 28P01', async () => {
      const err = await connectError(h, { password: 'agent-secret-guess' });
      expect(err.code).to.equal('28P01');
      expect(err.message).to.match(/authentication failed: the password must be this pod's agent token/);
    });

    it('accepts a rotated token as soon as it is written', async () => {
      fs.writeFileSync(tokenFile, 'rotated-token-456\n');
      expect(await query(h, 'select 1 as one', { password: 'rotated-token-456' })).to.deep.equal([{ one: 1 }]);
    });

    it('keeps the previous token valid for tokenGraceSeconds after a rotation, then refuses it', async () => {
      await h.stopProxy();
      await h.startProxy({ connection: `    clientAuth: { mode: token, tokenFile: ${tokenFile}, tokenGraceSeconds: 1.5 }` });
      expect(await query(h, 'select 1 as one', { password: 'local-agent-token-123' })).to.deep.equal([{ one: 1 }]);
      fs.writeFileSync(tokenFile, 'rotated-token-789\n');
      // An agent that read the file just before the rotation still gets in.
      expect(await query(h, 'select 1 as one', { password: 'local-agent-token-123' })).to.deep.equal([{ one: 1 }]);
      expect(await query(h, 'select 2 as two', { password: 'rotated-token-789' })).to.deep.equal([{ two: 2 }]);
      await new Promise((r) => setTimeout(r, 1600));
      expect((await connectError(h, { password: 'local-agent-token-123' })).code).to.equal('28P01');
      expect(await query(h, 'select 3 as three', { password: 'rotated-token-789' })).to.deep.equal([{ three: 3 }]);
    });

    it('checks the Kubernetes proxy\'s own token with that proxy, so its previous token keeps working through the grace period', async () => {
      await h.stopProxy();
      const identityDir = path.join(h.dir, 'identity');
      // The API server is never called here; the Kubernetes proxy is only the issuer of agent tokens.
      const kubeToken = path.join(h.dir, 'kube-token');
      fs.writeFileSync(kubeToken, 'unused\n');
      await h.startProxy({
        connection: '    clientAuth: { mode: token }',
        extraTop: `kubernetes: { listen: 127.0.0.1:0, identityDir: ${identityDir}, tokenGraceSeconds: 60, upstream: { server: http://127.0.0.1:1, tokenFile: ${kubeToken} } }`,
      });
      const first = fs.readFileSync(path.join(identityDir, 'token'), 'utf8').trim();
      expect(await query(h, 'select 1 as one', { password: first })).to.deep.equal([{ one: 1 }]);
      const second = await h.sidecar!.kubernetes!.rotateToken();
      expect(fs.readFileSync(path.join(identityDir, 'token'), 'utf8').trim()).to.equal(second);
      expect(await query(h, 'select 1 as one', { password: first })).to.deep.equal([{ one: 1 }]);
      expect(await query(h, 'select 1 as one', { password: second })).to.deep.equal([{ one: 1 }]);
      expect((await connectError(h, { password: 'agentgate.not-a-token' })).code).to.equal('28P01');
    });

    it('sees a rotation that happens between two logins (the file is watched), so the token read in between keeps working', async () => {
      await h.stopProxy();
      await h.startProxy({ connection: `    clientAuth: { mode: token, tokenFile: ${tokenFile}, tokenGraceSeconds: 30 }` });
      fs.writeFileSync(tokenFile, 'middle-token-1\n');
      await new Promise((r) => setTimeout(r, 2500));
      fs.writeFileSync(tokenFile, 'latest-token-2\n');
      expect(await query(h, 'select 1 as one', { password: 'middle-token-1' })).to.deep.equal([{ one: 1 }]);
      expect(await query(h, 'select 1 as one', { password: 'latest-token-2' })).to.deep.equal([{ one: 1 }]);
    });
  });
});
