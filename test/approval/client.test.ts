// The sidecar's client fails closed: whenever the approval service is down, slow
// or answering nonsense, the caller gets ApprovalUnavailable with a sentence that
// says why, and denies the operation.

import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ApprovalClient, ApprovalRefused, ApprovalUnavailable, howToApprove, specToInput } from '../../approval/client.js';
import { freePort } from '../support/ports.js';
import { POD_A, startHarness, startIdp } from './harness.js';

const input = { protocol: 'postgres' as const, connection: 'payments', operation: 'DELETE FROM cards', rule: 'approve-deletes' };

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
}

async function serve(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const s = http.createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: async () => {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

describe('approval client (sidecar side)', function () {
  this.timeout(30_000);

  it('fails closed when the service is down, naming the address and the cause', async () => {
    const port = await freePort();
    const err = await failure(new ApprovalClient({ url: `http://127.0.0.1:${port}`, token: 't' }).create(input));
    expect(err).to.be.instanceOf(ApprovalUnavailable);
    expect(err.message).to.equal(`the approval service at http://127.0.0.1:${port} is unreachable (ECONNREFUSED); the operation is denied`);
  });

  it('fails closed when the service accepts the connection but never answers', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const err = await failure(new ApprovalClient({ url, token: 't', timeoutMs: 300 }).create(input));
      expect(err).to.be.instanceOf(ApprovalUnavailable);
      expect(err.message).to.equal(`the approval service at ${url} did not answer within 300 ms; the operation is denied`);
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('fails closed on an answer that is not JSON', async () => {
    const s = await serve((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>proxy login</html>'));
    try {
      const err = await failure(new ApprovalClient({ url: s.url, token: 't' }).create(input));
      expect(err.message).to.equal(`the approval service at ${s.url} answered HTTP 200 with something that is not JSON; the operation is denied`);
    } finally {
      await s.close();
    }
  });

  it('fails closed on JSON that is not an approval request', async () => {
    const s = await serve((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"state":"approved"}'));
    try {
      const err = await failure(new ApprovalClient({ url: s.url, token: 't' }).get('x'));
      expect(err).to.be.instanceOf(ApprovalUnavailable);
      expect(err.message).to.equal(`the approval service at ${s.url} answered with a body that is not an approval request; the operation is denied`);
    } finally {
      await s.close();
    }
  });

  it('fails closed on a server error, passing its message on', async () => {
    const s = await serve((_req, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"unavailable","message":"the approval store does not answer"}'));
    try {
      const err = await failure(new ApprovalClient({ url: s.url, token: 't' }).create(input));
      expect(err).to.be.instanceOf(ApprovalUnavailable);
      expect(err.message).to.equal(`the approval service at ${s.url} refused to answer: the approval store does not answer; the operation is denied`);
    } finally {
      await s.close();
    }
  });

  it('fails closed when its token file cannot be read', async () => {
    const err = await failure(new ApprovalClient({ url: 'http://127.0.0.1:1', tokenFile: '/nonexistent/agentgate/token' }).create(input));
    expect(err.message).to.equal('cannot read the approval service token /nonexistent/agentgate/token: ENOENT');
  });

  it('fails closed when the service goes down while the client waits for a decision', async () => {
    const idp = await startIdp();
    const h = await startHarness(idp);
    try {
      const a = await h.sidecar(POD_A);
      const r = await a.create(input);
      const waiting = failure(a.waitForDecision(r.id, { timeoutMs: 20_000 }));
      await new Promise((res) => setTimeout(res, 100));
      await h.close();
      const err = await waiting;
      expect(err).to.be.instanceOf(ApprovalUnavailable);
      expect(err.message).to.match(/^the approval service at http:\/\/127\.0\.0\.1:\d+ (is unreachable|broke off its answer)/);
    } finally {
      await h.close().catch(() => undefined);
      await idp.close();
    }
  });

  it('reports a definite refusal as ApprovalRefused with the API code', async () => {
    const s = await serve((_req, res) => res.writeHead(409, { 'content-type': 'application/json' }).end('{"code":"not-approved","message":"approval request x is denied; it cannot be used"}'));
    try {
      const err = await failure(new ApprovalClient({ url: s.url, token: 't' }).use('x'));
      expect(err).to.be.instanceOf(ApprovalRefused);
      expect((err as ApprovalRefused).code).to.equal('not-approved');
    } finally {
      await s.close();
    }
  });

  it('turns a policy approval spec into request fields', () => {
    expect(specToInput({ mode: 'defer', scope: 'window', waitSeconds: 120, windowMinutes: 30, approverGroups: ['sre'], minApprovals: 2 })).to.deep.equal({
      mode: 'defer', scope: 'window', windowMinutes: 30, approverGroups: ['sre'], minApprovals: 2,
    });
  });

  it('says how to approve', () => {
    expect(howToApprove('abc', 'https://approvals.example')).to.equal('approval abc is needed: an approver runs `agentgate approvals approve abc --server https://approvals.example`');
  });
});
