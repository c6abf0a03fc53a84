// The first bytes of a connection: SSLRequest answered with TLS from the sidecar's loopback
// CA (the `ca.crt` the Kubernetes proxy writes into the identity directory), GSSENCRequest
// answered 'N', malformed or early packets answered exactly as PostgreSQL 15 answers them
// (compared with the real server), and every refused connection recorded in the audit
// trail and counted in a metric.

import { expect } from 'chai';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import pg from 'pg';
import { startHarness, psql, readAudit } from './harness.js';
import type { Harness } from './harness.js';
import { freePort } from '../../support/ports.js';
import { GSSENC_REQUEST, SSL_REQUEST, TERMINATE, errorFields, frames, rawExchange, startupPacket } from './raw-startup.js';

const STARTUP = startupPacket(196608, { user: 'agent_rw', database: 'payments' });

/** Speaks raw startup bytes: `request` answered by one byte each, then TLS when 'S', then the StartupMessage; resolves with the messages up to ReadyForQuery or close. */
async function negotiate(port: number, requests: Buffer[], ca?: string): Promise<{ answers: string; messages: string[] }> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  let answers = '';
  let stream: net.Socket = sock;
  for (const req of requests) {
    sock.write(req);
    const b: Buffer = await new Promise((r) => sock.once('data', r));
    answers += b.toString('latin1');
    if (b.toString() === 'S') {
      const t = tls.connect({ socket: sock, ca, servername: 'localhost' });
      await new Promise<void>((resolve, reject) => t.once('secureConnect', () => resolve()).once('error', reject));
      stream = t;
    }
  }
  stream.write(STARTUP);
  let got = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 5000);
    stream.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (frames(got).some((f) => f.type === 'Z' || f.type === 'E')) {
        clearTimeout(timer);
        resolve();
      }
    });
    stream.once('close', () => resolve());
  });
  stream.destroy();
  return { answers, messages: frames(got).map((f) => f.type) };
}

/** The last connection-refused event, once the audit writer has flushed one newer than `after` events. */
async function lastRefusal(h: Harness, after: number): Promise<Record<string, any>> {
  for (let i = 0; i < 50; i++) {
    const events = readAudit(h.auditFile);
    const e = events.slice(after).filter((x) => x.event === 'connection-refused').pop();
    if (e) return e;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no connection-refused event was written');
}

async function refusedCount(h: Harness, reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${h.metricsPort}/metrics`)).text();
  const m = new RegExp(`agentgate_pg_connections_refused_total\\{connection="payments",reason="${reason}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

describe('sidecar postgres: connection negotiation and refusals at startup', function () {
  this.timeout(120_000);
  let h: Harness;
  let identityDir: string;
  let caFile: string;

  before(async () => {
    h = await startHarness({ tls: true });
    identityDir = path.join(h.dir, 'identity');
    const kubeToken = path.join(h.dir, 'kube-token');
    fs.writeFileSync(kubeToken, 'not-used\n');
    await h.startProxy({
      extraTop: `kubernetes:
  listen: 127.0.0.1:${await freePort()}
  identityDir: ${identityDir}
  upstream: { server: "https://127.0.0.1:1", caFile: ${h.cluster.caFile}, tokenFile: ${kubeToken} }
`,
    });
    caFile = path.join(identityDir, 'ca.crt');
  });
  after(async () => h?.stop());

  describe('TLS on the listener, with the CA the identity volume carries', () => {
    it('serves psql with sslmode=verify-full sslrootcert=<identityDir>/ca.crt over TLS', async () => {
      const r = await psql({ ...h.proxyEnv(), PGSSLMODE: 'verify-full', PGSSLROOTCERT: caFile }, ['-A', '-t', '-c', 'select 41 + 1', '-c', '\\conninfo']);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.match(/^42\n/);
      expect(r.stdout).to.match(/SSL connection \(protocol: TLSv1\.[23]/);
    });

    it('serves the pg driver with ssl: { ca } and masks as before', async () => {
      const c = new pg.Client(h.clientConfig({ ssl: { ca: fs.readFileSync(caFile, 'utf8') } }));
      await c.connect();
      try {
        expect(((c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream).encrypted).to.equal(true);
        expect((await c.query('select pan from cards where id = 1')).rows).to.deep.equal([{ pan: '**** **** **** 1111' }]);
      } finally {
        await c.end();
      }
    });

    it('is the same CA as the Kubernetes proxy\'s (one loopback CA per sidecar)', () => {
      expect(h.sidecar!.caPem).to.equal(fs.readFileSync(caFile, 'utf8'));
    });

    it('fails verify-full for a client that trusts another CA', async () => {
      const c = new pg.Client(h.clientConfig({ ssl: { ca: fs.readFileSync(h.cluster.caFile!, 'utf8') } }));
      const err = await c.connect().then(
        () => undefined,
        (e: Error) => e,
      );
      await c.end().catch(() => {});
      expect(err?.message).to.match(/self[- ]signed|unable to verify|unable to get local issuer/i);
    });

    it('answers GSSENCRequest with N and goes on with the startup in the clear', async () => {
      const got = await negotiate(h.proxyPort, [GSSENC_REQUEST]);
      expect(got.answers).to.equal('N');
      expect(got.messages[0]).to.equal('R');
      expect(got.messages.slice(-1)).to.deep.equal(['Z']);
    });

    it('accepts GSSENCRequest then SSLRequest (N, then S and TLS), the order libpq uses with gssencmode=prefer', async () => {
      const got = await negotiate(h.proxyPort, [GSSENC_REQUEST, SSL_REQUEST], fs.readFileSync(caFile, 'utf8'));
      expect(got.answers).to.equal('NS');
      expect(got.messages.slice(-1)).to.deep.equal(['Z']);
    });

    it('refuses a GSSENCRequest after TLS as the server does (an unsupported protocol code)', async () => {
      const got = await negotiate(h.proxyPort, [SSL_REQUEST], fs.readFileSync(caFile, 'utf8'));
      expect(got.messages.slice(-1)).to.deep.equal(['Z']);
      // Over TLS, the second request is read as a startup packet of protocol 1234.5680.
      const sock = net.connect(h.proxyPort, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.write(SSL_REQUEST);
      await new Promise((r) => sock.once('data', r));
      const t = tls.connect({ socket: sock, ca: fs.readFileSync(caFile, 'utf8'), servername: 'localhost' });
      await new Promise((r) => t.once('secureConnect', r));
      t.write(GSSENC_REQUEST);
      let got2 = Buffer.alloc(0);
      await new Promise<void>((resolve) => {
        t.on('data', (c: Buffer) => (got2 = Buffer.concat([got2, c])));
        t.once('close', () => resolve());
        t.on('error', () => resolve());
      });
      const [e] = frames(got2);
      expect(e?.type).to.equal('E');
      expect(errorFields(e!.body)).to.include({ S: 'FATAL', C: '0A000', M: 'agentgate: unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0' });
    });

    it('refuses bytes injected after the SSLRequest before its answer, over the TLS channel, as the server does (08P01)', async () => {
      const injected = async (port: number) => {
        const sock = net.connect(port, '127.0.0.1');
        await new Promise((r) => sock.once('connect', r));
        sock.write(Buffer.concat([SSL_REQUEST, STARTUP]));
        const answer: Buffer = await new Promise((r) => sock.once('data', r));
        const t = tls.connect({ socket: sock, rejectUnauthorized: false });
        await new Promise((r) => t.once('secureConnect', r));
        let got = Buffer.alloc(0);
        await new Promise<void>((resolve) => {
          t.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
          t.once('close', () => resolve()).on('error', () => resolve());
        });
        return { answer: answer.toString(), error: errorFields(frames(got)[0]!.body) };
      };
      const straight = await injected(h.cluster.port);
      const proxied = await injected(h.proxyPort);
      expect(straight.error.M).to.equal('received unencrypted data after SSL request');
      expect(proxied.answer).to.equal(straight.answer);
      expect(proxied.error).to.include({ S: 'FATAL', C: straight.error.C, M: `agentgate: ${straight.error.M}`, D: straight.error.D });
    });
  });

  describe('packets PostgreSQL answers in its own way (compared with the real server)', () => {
    it('closes without a word on a Terminate sent before the StartupMessage', async () => {
      const straight = await rawExchange(h.cluster.port, [TERMINATE]);
      const proxied = await rawExchange(h.proxyPort, [TERMINATE]);
      expect(straight.length).to.equal(0);
      expect(straight.closed).to.equal(true);
      expect(proxied.length).to.equal(0);
      expect(proxied.closed).to.equal(true);
    });

    it('closes without a word on an impossible length word', async () => {
      const bad = Buffer.from([0, 0, 0, 2, 0, 3, 0, 0]);
      const straight = await rawExchange(h.cluster.port, [bad]);
      const proxied = await rawExchange(h.proxyPort, [bad]);
      expect([straight.length, straight.closed]).to.deep.equal([0, true]);
      expect([proxied.length, proxied.closed]).to.deep.equal([0, true]);
    });

    it('answers protocol 2.0 with the server\'s FATAL, in the protocol-2 error format the server uses for it', async () => {
      const v2 = startupPacket(0x20000, { user: 'agent_rw', database: 'payments' });
      const straight = (await rawExchange(h.cluster.port, [v2])).toString('latin1');
      const proxied = (await rawExchange(h.proxyPort, [v2])).toString('latin1');
      expect(straight).to.equal('EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0');
      expect(proxied).to.equal(straight.replace('FATAL:  ', 'FATAL:  agentgate: '));
    });

    it('answers a StartupMessage without its terminator with the server\'s FATAL 08P01', async () => {
      const pkt = startupPacket(196608, { user: 'agent_rw', database: 'payments' });
      const cut = Buffer.from(pkt.subarray(0, pkt.length - 1));
      cut.writeInt32BE(cut.length, 0);
      const [s] = frames(await rawExchange(h.cluster.port, [cut]));
      const [p] = frames(await rawExchange(h.proxyPort, [cut]));
      const sf = errorFields(s!.body);
      expect(errorFields(p!.body)).to.include({ S: 'FATAL', C: sf.C, M: `agentgate: ${sf.M}` });
    });
  });

  describe('refusals leave an audit event and a metric', () => {
    it('records a refused setting with its reason and counts it under reason="setting"', async () => {
      const before = await refusedCount(h, 'setting');
      const seen = readAudit(h.auditFile).length;
      // sslmode=require: with prefer, libpq tries again in the clear after a FATAL over TLS.
      const r = await psql({ ...h.proxyEnv(), PGSSLMODE: 'require', PGOPTIONS: '-c work_mem=64MB' }, ['-c', 'select 1']);
      expect(r.code).to.equal(2);
      expect(await refusedCount(h, 'setting')).to.equal(before + 1);
      const e = await lastRefusal(h, seen);
      expect(e).to.include({ protocol: 'postgres', connection: 'payments', verb: 'connect', sqlstate: '28000' });
      expect(e.responseStatus.reason).to.equal('setting');
      expect(e.responseStatus.message).to.contain('work_mem=64MB');
      expect(e.user.username).to.be.a('string');
    });

    it('records a malformed startup the client is told nothing about, under reason="protocol"', async () => {
      const before = await refusedCount(h, 'protocol');
      const seen = readAudit(h.auditFile).length;
      await rawExchange(h.proxyPort, [Buffer.from([0, 0, 0, 2, 0, 3, 0, 0])]);
      expect((await lastRefusal(h, seen)).responseStatus).to.deep.equal({ reason: 'protocol', message: 'invalid length of startup packet' });
      expect(await refusedCount(h, 'protocol')).to.equal(before + 1);
    });

    it('records nothing for a client that leaves with a Terminate', async () => {
      const events = readAudit(h.auditFile).length;
      await rawExchange(h.proxyPort, [TERMINATE]);
      // A refusal written after it proves the writer flushed: only that one is new.
      await rawExchange(h.proxyPort, [Buffer.from([0, 0, 0, 2, 0, 3, 0, 0])]);
      await lastRefusal(h, events);
      expect(readAudit(h.auditFile).length).to.equal(events + 1);
    });
  });

  describe('clientTls modes', () => {
    before(async () => h.stopProxy());
    afterEach(async () => h.stopProxy());

    it('require: refuses a client that does not ask for TLS with FATAL 28000, and serves one that does', async () => {
      await h.startProxy({ connection: '    clientTls: { mode: require }' });
      const before = await refusedCount(h, 'tls-required');
      const plain = await psql({ ...h.proxyEnv(), PGSSLMODE: 'disable' }, ['-c', 'select 1']);
      expect(plain.code).to.equal(2);
      expect(plain.stderr).to.contain('FATAL:  agentgate: this connection requires TLS: connect with sslmode=require, verify-ca or verify-full');
      expect(await refusedCount(h, 'tls-required')).to.equal(before + 1);
      const secure = await psql({ ...h.proxyEnv(), PGSSLMODE: 'require' }, ['-A', '-t', '-c', 'select 1']);
      expect(secure.stdout.trim()).to.equal('1');
    });

    it('disable: answers the SSLRequest N, so sslmode=require fails in the client', async () => {
      await h.startProxy({ connection: '    clientTls: { mode: disable }' });
      const r = await psql({ ...h.proxyEnv(), PGSSLMODE: 'require' }, ['-c', 'select 1']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('server does not support SSL, but SSL was required');
    });

    it('records a token-mode authentication failure without the password', async () => {
      const tokenFile = path.join(h.dir, 'agent-token');
      fs.writeFileSync(tokenFile, 'the-real-agent-token-1\n');
      await h.startProxy({ connection: `    clientAuth: { mode: token, tokenFile: ${tokenFile} }` });
      const seen = readAudit(h.auditFile).length;
      const c = new pg.Client(h.clientConfig({ password: 'guess-4111111111111111' }));
      const err = await c.connect().then(
        () => undefined,
        (e: pg.DatabaseError) => e,
      );
      await c.end().catch(() => {});
      expect(err?.code).to.equal('28P01');
      const e = await lastRefusal(h, seen);
      expect(e.responseStatus.reason).to.equal('authentication');
      expect(fs.readFileSync(h.auditFile, 'utf8')).to.not.contain('guess-');
    });
  });
});
