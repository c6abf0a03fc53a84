// The Kubernetes proxy at the HTTP level: authentication (local token, rotation,
// OIDC JWTs), impersonation, what goes upstream, refusals, audit events and metrics.
// Requests are made with undici the way client libraries make them.
// API server: the DOUBLE (test/support/kube-api-double.ts).

import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { JWK } from 'jose';
import { registry } from '../../../core/metrics.js';
import { createServingIdentity } from '../../../sidecar/kubernetes/tls-identity.js';
import { PAN, PAN_MASKED, POD, startHarness } from './harness.js';
import type { Harness } from './harness.js';

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

async function call(h: Harness, urlPath: string, o: { token?: string | null; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const ca = await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8');
  const token = o.token === undefined ? await h.token() : o.token;
  const dispatcher = new Agent({ connect: { ca } });
  try {
    const r = await request(`https://${h.proxy.address}${urlPath}`, {
      method: (o.method ?? 'GET') as 'GET',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(o.body ? { 'content-type': 'application/json' } : {}), ...o.headers },
      body: o.body ?? null,
      dispatcher,
    });
    const text = await r.body.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.statusCode, headers: r.headers as Reply['headers'], text, json };
  } finally {
    await dispatcher.close();
  }
}

function seed(h: Harness): void {
  h.double.put('namespaces', { metadata: { name: 'payments' } });
  h.double.put('configmaps', { metadata: { name: 'cards', namespace: 'payments' }, data: { note: `card ${PAN}` } });
  h.double.put('pods', { metadata: { name: 'debug-0', namespace: 'payments' } });
}

describe('kubernetes proxy: identity files and local tokens (API server: the double)', function () {
  this.timeout(30_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ config: { tokenGraceSeconds: 1 } });
    seed(h);
  });
  after(async () => h?.stop());

  it('writes token, ca.crt and namespace into the identity directory', async () => {
    expect(await readFile(path.join(h.identityDir, 'namespace'), 'utf8')).to.equal('payments');
    expect(await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8')).to.equal(h.proxy.caPem);
    expect(await h.token()).to.match(/^agentgate\.[A-Za-z0-9_-]{43}$/);
  });

  it('serves a certificate for 127.0.0.1 and localhost signed by that CA', async () => {
    const port = h.proxy.address.split(':').pop();
    const ca = await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8');
    for (const host of ['127.0.0.1', 'localhost']) {
      const dispatcher = new Agent({ connect: { ca } });
      const r = await request(`https://${host}:${port}/version`, { headers: { authorization: `Bearer ${await h.token()}` }, dispatcher });
      expect(r.statusCode).to.equal(200);
      await r.body.dump();
      await dispatcher.close();
    }
  });

  it('refuses a request without a token with a 401 Status', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps', { token: null });
    expect(r.status).to.equal(401);
    expect(r.json).to.deep.equal({
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Unauthorized', code: 401,
      message: 'Unauthorized: agentgate: no bearer token: use the token agentgate wrote to the service-account directory',
    });
  });

  it('answers a URL the API server could not parse with a 400 Status, sending nothing upstream', async () => {
    const before = h.double.requests.length;
    const r = await call(h, '/api/v1/namespaces/%ZZ/pods');
    expect(r.status).to.equal(400);
    expect(r.json).to.deep.include({ kind: 'Status', reason: 'BadRequest', code: 400, message: "agentgate: path '/api/v1/namespaces/%ZZ/pods' has an invalid percent escape or invalid UTF-8" });
    expect(h.double.requests.length).to.equal(before);
  });

  it('tells other listeners which tokens are valid (the PostgreSQL token mode uses this)', async () => {
    expect(h.proxy.acceptsToken(await h.token())).to.equal(true);
    expect(h.proxy.acceptsToken('agentgate.guess')).to.equal(false);
  });

  it('refuses an unknown token with a 401 Status', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps', { token: 'agentgate.not-the-token' });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.equal('Unauthorized: agentgate: invalid bearer token: it is neither the current agentgate token nor a JWT from a configured issuer');
  });

  it('never forwards the agent token: the API server sees the pod service-account token', async () => {
    const agentToken = await h.token();
    await call(h, '/api/v1/namespaces/payments/configmaps/cards');
    const seen = h.double.requests.at(-1)!;
    expect(seen.headers.authorization).to.equal(`Bearer ${h.double.token}`);
    expect(JSON.stringify(h.double.requests)).not.to.contain(agentToken);
  });

  it('accepts the previous token during the grace period after a rotation, then refuses it', async () => {
    const old = await h.token();
    const fresh = await h.proxy.rotateToken();
    expect(await h.token()).to.equal(fresh);
    expect((await call(h, '/api/v1/namespaces/payments/configmaps', { token: old })).status).to.equal(200);
    expect((await call(h, '/api/v1/namespaces/payments/configmaps', { token: fresh })).status).to.equal(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await call(h, '/api/v1/namespaces/payments/configmaps', { token: old })).status).to.equal(401);
    expect((await call(h, '/api/v1/namespaces/payments/configmaps', { token: fresh })).status).to.equal(200);
  });
});

describe('kubernetes proxy: OIDC JWTs (API server: the double; issuer: a JWKS served by the test)', function () {
  this.timeout(30_000);
  let h: Harness;
  let jwks: https.Server;
  let issuer: string;
  let key: PrivateKey;
  let other: PrivateKey;
  let publicJwk: JWK;

  before(async () => {
    const pair = await generateKeyPair('RS256');
    key = pair.privateKey;
    other = (await generateKeyPair('RS256')).privateKey;
    publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const id = createServingIdentity();
    jwks = https.createServer({ key: id.keyPem, cert: id.certPem }, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(req.url === '/jwks' ? { keys: [publicJwk] } : { issuer, jwks_uri: `${issuer}/jwks` }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    issuer = `https://127.0.0.1:${(jwks.address() as AddressInfo).port}`;
    const { writeFile, mkdtemp } = await import('node:fs/promises');
    const os = await import('node:os');
    const caFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'agentgate-jwks-')), 'ca.crt');
    await writeFile(caFile, id.caPem);
    h = await startHarness({
      config: { oidc: [{ issuer, audience: 'agentgate', jwksUri: `${issuer}/jwks`, caFile }] },
      policy: `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: oidc-test }
spec:
  rules:
    - name: model-reads
      subjects: ["${issuer}#model:claude"]
      kubernetes: { verbs: [get, list], resources: [configmaps] }
      action: allow
`,
    });
    seed(h);
  });
  after(async () => {
    await h?.stop();
    jwks?.close();
  });

  const sign = (claims: Record<string, unknown>, o: { key?: PrivateKey; exp?: string | number; aud?: string; iss?: string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(o.iss ?? issuer)
      .setAudience(o.aud ?? 'agentgate')
      .setSubject('model:claude')
      .setIssuedAt()
      .setExpirationTime(o.exp ?? '5m')
      .sign(o.key ?? key);

  it('accepts a valid JWT and records its subject, prefixed with the issuer, beside the pod', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: await sign({ groups: ['models'] }) });
    expect(r.status).to.equal(200);
    expect(r.json.data.note).to.equal(`card ${PAN_MASKED}`);
    const ev = (await h.events()).find((e) => e.auditID === r.headers['audit-id']);
    expect(ev?.user).to.deep.equal({
      username: `${issuer}#model:claude`,
      groups: [`${issuer}#models`, 'system:authenticated'],
      extra: { 'agentgate.dev/identity': ['oidc'], 'agentgate.dev/issuer': [issuer] },
    });
    expect(ev?.pod).to.deep.equal(POD);
  });

  it('refuses an expired JWT', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: await sign({}, { exp: Math.floor(Date.now() / 1000) - 3600 }) });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.equal('Unauthorized: agentgate: JWT rejected: token expired');
  });

  it('refuses a JWT signed by another key', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: await sign({}, { key: other }) });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.equal('Unauthorized: agentgate: JWT rejected: signature verification failed');
  });

  it('refuses a JWT for another audience', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: await sign({}, { aud: 'someone-else' }) });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.match(/^Unauthorized: agentgate: JWT rejected: claim 'aud' check failed/);
  });

  it("refuses alg 'none'", async () => {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const t = `${enc({ alg: 'none' })}.${enc({ iss: issuer, aud: 'agentgate', sub: 'model:claude', exp: Math.floor(Date.now() / 1000) + 300 })}.`;
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: t });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.equal("Unauthorized: agentgate: JWT algorithm 'none' is not accepted (asymmetric signatures only)");
  });

  it('refuses HS256 signed with the public key as the secret (algorithm confusion)', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(publicJwk));
    const t = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setIssuer(issuer).setAudience('agentgate').setSubject('model:claude').setExpirationTime('5m').sign(secret);
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: t });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.equal("Unauthorized: agentgate: JWT algorithm 'HS256' is not accepted (asymmetric signatures only)");
  });

  it('refuses a JWT from an issuer that is not configured', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { token: await sign({}, { iss: 'https://evil.example' }) });
    expect(r.status).to.equal(401);
    expect(r.json.message).to.equal("Unauthorized: agentgate: JWT issuer 'https://evil.example' is not configured");
  });
});

describe('kubernetes proxy: decisions, upstream and audit (API server: the double)', function () {
  this.timeout(30_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
    seed(h);
  });
  after(async () => h?.stop());

  it('returns its audit ID in Audit-Id and writes a verbatim audit.k8s.io/v1 Event', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { headers: { 'user-agent': 'spec/1.0' } });
    expect(r.status).to.equal(200);
    const id = r.headers['audit-id'] as string;
    expect(id).to.match(/^[0-9a-f-]{36}$/);
    const ev = (await h.events()).find((e) => e.auditID === id)!;
    expect(ev).to.deep.include({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Request',
      stage: 'ResponseComplete',
      requestURI: '/api/v1/namespaces/payments/configmaps/cards',
      verb: 'get',
      userAgent: 'spec/1.0',
      sourceIPs: ['127.0.0.1'],
      protocol: 'kubernetes',
    });
    expect(ev.user).to.deep.equal({
      username: 'system:serviceaccount:payments:agent',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:payments', 'system:authenticated'],
      extra: { 'agentgate.dev/identity': ['service-account'] },
    });
    expect(ev.objectRef).to.deep.equal({ resource: 'configmaps', namespace: 'payments', name: 'cards', apiVersion: 'v1' });
    expect(ev.responseStatus).to.deep.equal({ metadata: {}, code: 200 });
    expect(ev.annotations).to.deep.include({ 'authorization.k8s.io/decision': 'allow', 'agentgate.dev/rule': 'read-everything' });
    expect(ev.annotations!['agentgate.dev/upstream-audit-id']).to.match(/^[0-9a-f-]{36}$/);
    expect(ev.hash).to.match(/^[0-9a-f]{64}$/);
  });

  it('audits a refused delete as forbid with the rule and the reason', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards', { method: 'DELETE' });
    expect(r.status).to.equal(403);
    expect(r.json).to.deep.include({ reason: 'Forbidden', code: 403, details: { name: 'cards', group: '', kind: 'configmaps' } });
    const ev = (await h.events()).find((e) => e.auditID === r.headers['audit-id'])!;
    expect(ev.annotations).to.deep.include({ 'authorization.k8s.io/decision': 'forbid', 'agentgate.dev/rule': 'no-deletes' });
    expect(ev.responseStatus?.code).to.equal(403);
  });

  it('audits a create with the request object masked', async () => {
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'new-card' }, data: { pan: PAN } });
    const r = await call(h, '/api/v1/namespaces/payments/configmaps', { method: 'POST', body });
    expect(r.status).to.equal(201);
    expect(r.json.data.pan).to.equal(PAN_MASKED);
    expect(h.double.get('configmaps', 'payments', 'new-card')?.data.pan).to.equal(PAN);
    const ev = (await h.events()).find((e) => e.auditID === r.headers['audit-id'])!;
    expect((ev.requestObject as any).data.pan).to.equal(PAN_MASKED);
    expect(await readFile(h.auditFile, 'utf8')).not.to.contain(PAN);
  });

  it('rewrites a protobuf Accept to JSON before it goes upstream', async () => {
    await call(h, '/api/v1/namespaces/payments/configmaps', { headers: { accept: 'application/vnd.kubernetes.protobuf, application/json' } });
    expect(h.double.requests.at(-1)!.headers.accept).to.equal('application/json');
  });

  it('refuses a body that is not JSON where JSON was expected, never passing it on', async () => {
    h.double.override = (req, res) => {
      if (!req.url?.includes('/configmaps/cards')) return false;
      res.writeHead(200, { 'content-type': 'application/vnd.kubernetes.protobuf' });
      res.end(Buffer.from(`k8s\0${PAN}`));
      return true;
    };
    try {
      const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards');
      expect(r.status).to.equal(502);
      expect(r.json.message).to.equal("agentgate: the API server answered with 'application/vnd.kubernetes.protobuf' where JSON was requested; responses are only passed on masked, so this one was refused");
      expect(r.text).not.to.contain(PAN);
    } finally {
      h.double.override = undefined;
    }
  });

  it('refuses a response whose JSON turns invalid with a 502 Status, passing none of it', async () => {
    h.double.override = (req, res) => {
      if (!req.url?.includes('/configmaps/cards')) return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"data":{"a":"x"} ${PAN} "b"`);
      return true;
    };
    try {
      const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards');
      expect(r.status).to.equal(502);
      expect(r.json.message).to.match(/^agentgate: the API server's response could not be masked \(invalid JSON at line 1, byte \d+: .*\), so it was refused$/);
      expect(r.text).not.to.contain(PAN);
    } finally {
      h.double.override = undefined;
    }
  });

  it('refuses impersonation headers unless a rule allows them', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps', { headers: { 'impersonate-user': 'system:admin' } });
    expect(r.status).to.equal(403);
    expect(r.json.message).to.match(/^users "system:admin" is forbidden: User "system:serviceaccount:payments:agent" cannot impersonate users through agentgate: denied by rule 'builtin:impersonation'/);
    expect(h.double.requests.some((q) => q.headers['impersonate-user'] === 'system:admin')).to.equal(false);
  });

  it('passes an impersonation a rule allows on to the API server', async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps', { headers: { 'impersonate-user': 'readonly' } });
    expect(r.status).to.equal(200);
    expect(h.double.requests.at(-1)!.headers['impersonate-user']).to.equal('readonly');
    const ev = (await h.events()).find((e) => e.auditID === r.headers['audit-id'])!;
    expect(ev.impersonatedUser).to.deep.equal({ username: 'readonly' });
  });

  it('masks pods/log text, also while following', async () => {
    h.double.appendLog('payments', 'debug-0', `charged ${PAN}`);
    const r = await call(h, '/api/v1/namespaces/payments/pods/debug-0/log');
    expect(r.status).to.equal(200);
    expect(r.text).to.equal(`charged ${PAN_MASKED}\n`);

    const ca = await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8');
    const dispatcher = new Agent({ connect: { ca } });
    const follow = await request(`https://${h.proxy.address}/api/v1/namespaces/payments/pods/debug-0/log?follow=true`, { headers: { authorization: `Bearer ${await h.token()}` }, dispatcher });
    let got = '';
    follow.body.on('data', (c: Buffer) => (got += c.toString()));
    await until(() => got.includes('\n'));
    h.double.appendLog('payments', 'debug-0', `refund 5500-0000-0000-0004`);
    await until(() => got.includes('refund'));
    follow.body.destroy();
    await dispatcher.destroy();
    expect(got).to.equal(`charged ${PAN_MASKED}\nrefund ****-****-****-0004\n`);
  });

  it('ends the upstream watch when the client drops it', async () => {
    const ca = await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8');
    const dispatcher = new Agent({ connect: { ca } });
    const w = await request(`https://${h.proxy.address}/api/v1/namespaces/payments/configmaps?watch=1`, { headers: { authorization: `Bearer ${await h.token()}` }, dispatcher });
    let got = '';
    w.body.on('data', (c: Buffer) => (got += c.toString()));
    await until(() => got.includes('ADDED'));
    expect(h.double.openWatches).to.equal(1);
    expect(await metric('agentgate_kube_watches_open')).to.equal(1);
    w.body.destroy();
    await dispatcher.destroy();
    await until(() => h.double.openWatches === 0);
    await until(async () => (await metric('agentgate_kube_watches_open')) === 0);
  });

  it('counts requests by verb, group, decision and status class', async () => {
    const m = await registry.getSingleMetric('agentgate_kube_requests_total')!.get();
    const v = (labels: Record<string, string>) => m.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val))?.value ?? 0;
    expect(v({ verb: 'get', group: 'core', decision: 'allow', code: '2xx' })).to.be.greaterThan(0);
    expect(v({ verb: 'delete', group: 'core', decision: 'deny', code: '4xx' })).to.be.greaterThan(0);
  });

  it('answers 503 with a Status while the API server is down, and recovers', async () => {
    await h.double.down();
    try {
      const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards');
      expect(r.status).to.equal(503);
      expect(r.json).to.deep.include({ kind: 'Status', reason: 'ServiceUnavailable', code: 503 });
      expect(r.json.message).to.match(new RegExp(`^agentgate: the Kubernetes API server \\(${h.double.url.replace(/\./g, '\\.')}\\) is unavailable: `));
    } finally {
      await h.double.up();
    }
    expect((await call(h, '/api/v1/namespaces/payments/configmaps/cards')).status).to.equal(200);
  });

  it('re-reads a rotated service-account token when the API server rejects the old one', async () => {
    const { writeFile } = await import('node:fs/promises');
    h.double.token = 'rotated-sa-token';
    await writeFile(h.upstreamTokenFile, 'rotated-sa-token\n');
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards');
    expect(r.status).to.equal(200);
    expect(h.double.requests.at(-1)!.headers.authorization).to.equal('Bearer rotated-sa-token');
  });
});

async function metric(name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values[0]?.value ?? 0;
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('kubernetes proxy with impersonate: true (API server: the double)', function () {
  this.timeout(30_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ config: { impersonate: true } });
    seed(h);
  });
  after(async () => h?.stop());

  it("forwards as the agent: Impersonate-User and -Group from its verified identity, with the pod's own token", async () => {
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards');
    expect(r.status).to.equal(200);
    const seen = h.double.requests.at(-1)!;
    expect(seen.headers['impersonate-user']).to.equal('system:serviceaccount:payments:agent');
    expect(seen.headers['impersonate-group']).to.equal('system:serviceaccounts, system:serviceaccounts:payments');
    expect(seen.headers.authorization).to.equal(`Bearer ${h.double.token}`);
  });
});

describe('kubernetes proxy when the audit trail fails (API server: the double)', function () {
  this.timeout(30_000);
  let h: Harness;
  let failing = false;
  before(async () => {
    h = await startHarness({
      wrapAudit: (sink) => ({
        append: (e) => {
          if (failing) throw new Error('audit trail unavailable: ENOSPC: no space left on device');
          return sink.append(e);
        },
        health: () => sink.health(),
        flush: () => sink.flush(),
        close: () => sink.close(),
      }),
    });
    seed(h);
  });
  after(async () => h?.stop());

  it('refuses requests with 503 once an append failed, and accepts them again when the trail recovers', async () => {
    expect((await call(h, '/api/v1/namespaces/payments/configmaps/cards')).status).to.equal(200);
    failing = true;
    // The request during which the trail broke was already answered; the next ones are refused.
    await call(h, '/api/v1/namespaces/payments/configmaps/cards');
    const before = h.double.requests.length;
    const r = await call(h, '/api/v1/namespaces/payments/configmaps/cards');
    expect(r.status).to.equal(503);
    expect(r.json.message).to.equal('agentgate: the audit trail is unavailable (audit trail unavailable: ENOSPC: no space left on device); requests are refused until it can record them again');
    expect(h.double.requests.length).to.equal(before);
    failing = false;
    await call(h, '/api/v1/namespaces/payments/configmaps/cards'); // its refusal is appended: the gate opens
    expect((await call(h, '/api/v1/namespaces/payments/configmaps/cards')).status).to.equal(200);
  });
});

describe('kubernetes proxy without an API server credential (API server: none reached)', function () {
  this.timeout(30_000);

  it('refuses every request with 403 when the pod has no service-account token (empty token file setting)', async () => {
    const h = await startHarness({ config: { upstream: { server: 'https://127.0.0.1:1', tokenFile: '' } } });
    try {
      const r = await call(h, '/api/v1/namespaces/payments/configmaps');
      expect(r.status).to.equal(403);
      expect(r.json.message).to.equal(
        'agentgate: this pod has no service-account token for the API server (automountServiceAccountToken: false), so agentgate refuses every Kubernetes request; set agentgate.dev/kubernetes-access: "true" on the pod to give it one',
      );
    } finally {
      await h.stop();
    }
  });

  it('refuses to start when the upstream token file is the agent token it writes itself', async () => {
    const { startKubernetesProxy } = await import('../../../sidecar/kubernetes/proxy.js');
    const { createLogger } = await import('../../../core/log.js');
    const err = await startKubernetesProxy(
      { listen: '127.0.0.1:0', identityDir: '/tmp/agentgate-id-x', upstream: { server: 'https://127.0.0.1:1', tokenFile: '/tmp/agentgate-id-x/token' } },
      { policy: { current: () => { throw new Error('unused'); } }, audit: { append: () => { throw new Error('unused'); }, health: () => ({ ok: true }), flush: async () => undefined, close: async () => undefined }, log: createLogger('t', 'silent'), pod: POD },
    ).then(
      () => 'started',
      (e: Error) => e.message,
    );
    expect(err).to.equal(
      'kubernetes.upstream.tokenFile (/tmp/agentgate-id-x/token) is in identityDir (/tmp/agentgate-id-x): the upstream token must be the pod\'s real service-account token, mounted for the sidecar alone',
    );
  });
});
