// The approval service over real HTTP, with approver and agent tokens from a real
// OpenID provider (oidc-provider 8) and sidecar tokens shaped like projected
// service-account tokens; storage on PGlite (the same contract on PostgreSQL is in
// store.test.ts and replicas.test.ts).

import { expect } from 'chai';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApprovalRefused } from '../../approval/client.js';
import type { ApprovalClient } from '../../approval/client.js';
import { registry } from '../../core/metrics.js';
import { POD_A, POD_B, UPDATE_SQL, startHarness, startIdp } from './harness.js';
import type { Harness, Idp } from './harness.js';

const base = { protocol: 'postgres' as const, connection: 'payments', rule: 'approve-card-updates', approverGroups: ['payments-approvers'] };

describe('approval service API', function () {
  this.timeout(60_000);
  let idp: Idp;
  let h: Harness;
  let a: ApprovalClient;
  let alice: string;
  let bob: string;
  let carol: string;
  let podA: string;

  before(async () => {
    idp = await startIdp();
    h = await startHarness(idp);
    a = await h.sidecar(POD_A);
    podA = await idp.sa.token(POD_A);
    [alice, bob, carol] = await Promise.all(['alice@example.com', 'bob@example.com', 'carol@example.com'].map((n) => h.approverToken(n)));
  });
  after(async () => {
    await h?.close();
    await idp?.close();
  });

  describe('service endpoints', () => {
    it('serves its OpenAPI 3 document, identical to approval/openapi.json', async () => {
      const res = await fetch(`${h.url}/openapi.json`);
      const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
      expect(res.status).to.equal(200);
      expect(doc.openapi).to.match(/^3\./);
      expect(doc).to.deep.equal(JSON.parse(fs.readFileSync('approval/openapi.json', 'utf8')));
      expect(Object.keys(doc.paths)).to.include.members(['/v1/approvals', '/v1/approvals/{id}', '/v1/approvals/{id}/approve', '/v1/approvals/{id}/deny', '/v1/approvals/{id}/cancel', '/v1/approvals/{id}/use']);
    });

    it('answers /healthz and /readyz without a token', async () => {
      expect((await fetch(`${h.url}/healthz`)).status).to.equal(200);
      expect(await (await fetch(`${h.url}/readyz`)).json()).to.deep.equal({ status: 'ready' });
    });

    it('answers an unknown path with 404 not-found as JSON', async () => {
      expect(await h.call(alice, 'GET', '/v2/things')).to.deep.equal({ status: 404, body: { code: 'not-found', message: 'no such resource /v2/things (see /openapi.json)' } });
    });

    it('answers a wrong method with 405 method-not-allowed', async () => {
      expect((await h.call(alice, 'DELETE', '/v1/approvals')).body.code).to.equal('method-not-allowed');
    });
  });

  describe('authentication', () => {
    it('refuses a request without a token: 401 unauthenticated', async () => {
      const res = await fetch(`${h.url}/v1/approvals`);
      expect(res.status).to.equal(401);
      expect(res.headers.get('www-authenticate')).to.equal('Bearer');
      expect(((await res.json()) as { code: string }).code).to.equal('unauthenticated');
    });

    it('refuses a token that is not a JWT', async () => {
      expect(await h.call('not-a-jwt', 'GET', '/v1/approvals')).to.deep.equal({ status: 401, body: { code: 'unauthenticated', message: 'the bearer token is not a JWT' } });
    });

    it('refuses an approver token issued for another audience', async () => {
      const other = await idp.oidc.token('alice@example.com', 'https://elsewhere.example');
      const r = await h.call(other, 'GET', '/v1/approvals');
      expect(r.status).to.equal(401);
      expect(r.body.message).to.match(/^approver token rejected: .*aud/);
    });

    it('refuses a sidecar token of another audience', async () => {
      const t = await idp.sa.token(POD_A, { audience: 'https://kubernetes.default.svc' });
      expect((await h.call(t, 'GET', '/v1/approvals')).body.message).to.match(/^sidecar token rejected: .*aud/);
    });

    it('refuses a service-account token not bound to a pod', async () => {
      const t = await idp.sa.token(POD_A, { boundToPod: false });
      expect((await h.call(t, 'GET', '/v1/approvals')).body).to.deep.equal({
        code: 'unauthenticated', message: 'sidecar token is not bound to a pod (a projected service-account token is required)',
      });
    });

    it('refuses an expired sidecar token', async () => {
      const t = await idp.sa.token(POD_A, { expiresInSeconds: -120 });
      expect((await h.call(t, 'GET', '/v1/approvals')).body.message).to.match(/^sidecar token rejected: .*exp/);
    });

    it('lets only sidecars create and only approvers decide', async () => {
      expect((await h.call(alice, 'POST', '/v1/approvals', { ...base, operation: 'DELETE FROM cards' })).body.code).to.equal('forbidden');
      const r = await a.create({ ...base, operation: 'DELETE FROM cards WHERE id = 1' });
      expect((await h.call(podA, 'POST', `/v1/approvals/${r.id}/approve`, {})).body.code).to.equal('forbidden');
    });
  });

  describe('creating requests', () => {
    it('creates a pending request for the pod of the token, with the operation masked', async () => {
      const r = await h.call(podA, 'POST', '/v1/approvals', { ...base, operation: UPDATE_SQL, justification: 'ticket OPS-42, card 4111111111111111' });
      expect(r.status).to.equal(201);
      expect(r.body.state).to.equal('pending');
      expect(r.body.operation).to.equal("UPDATE cards SET pan = '**** **** **** 1111' WHERE id = 7");
      expect(r.body.justification).to.equal('ticket OPS-42, card ************1111');
      expect(r.body.requester).to.deep.equal({ pod: POD_A, serviceAccountSubject: 'system:serviceaccount:payments:agent' });
      expect(Date.parse(r.body.expiresAt) - Date.parse(r.body.createdAt)).to.equal(15 * 60 * 1000);
      expect(r.body.binding).to.match(/^[0-9a-f]{64}$/);
    });

    it('refuses a body that is not JSON: 400 bad-request', async () => {
      const r = await h.call(podA, 'POST', '/v1/approvals', '{"protocol":');
      expect(r.status).to.equal(400);
      expect(r.body.code).to.equal('bad-request');
    });

    it('refuses a request without an operation, naming the field', async () => {
      expect((await h.call(podA, 'POST', '/v1/approvals', { ...base })).body).to.deep.equal({ code: 'bad-request', message: 'operation must be a non-empty string' });
    });

    it('refuses an unknown protocol', async () => {
      expect((await h.call(podA, 'POST', '/v1/approvals', { ...base, protocol: 'mysql', operation: 'x' })).body.message).to.equal('protocol must be "postgres" or "kubernetes"');
    });
  });

  describe('deciding', () => {
    it('approve: the waiting sidecar learns the decision, uses it once, and cannot use it twice', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 1 WHERE id = 1' });
      const waiting = a.waitForDecision(r.id, { timeoutMs: 20_000 });
      const d = await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, { reason: 'OPS-42' });
      expect(d.body.state).to.equal('approved');
      const seen = await waiting;
      expect(seen.state).to.equal('approved');
      expect(seen.decisions.map((x) => [x.approver, x.verdict, x.reason])).to.deep.equal([['alice@example.com', 'approve', 'OPS-42']]);
      expect((await a.use(r.id)).state).to.equal('used');
      await a.use(r.id).then(() => expect.fail('second use'), (e) => expect((e as ApprovalRefused).code).to.equal('not-approved'));
    });

    it('deny needs a reason: 400 reason-required', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 2 WHERE id = 2' });
      expect(await h.call(alice, 'POST', `/v1/approvals/${r.id}/deny`, {})).to.deep.equal({
        status: 400, body: { code: 'reason-required', message: 'a reason is required to deny a request (--reason)' },
      });
    });

    it('deny: the waiting sidecar learns it was denied and why', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 3 WHERE id = 3' });
      const waiting = a.waitForDecision(r.id, { timeoutMs: 20_000 });
      await h.call(alice, 'POST', `/v1/approvals/${r.id}/deny`, { reason: 'not during the freeze' });
      const seen = await waiting;
      expect([seen.state, seen.decisions[0].reason]).to.deep.equal(['denied', 'not during the freeze']);
    });

    it('refuses a decision on a request already decided: 409 not-pending', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 4 WHERE id = 4' });
      await h.call(alice, 'POST', `/v1/approvals/${r.id}/deny`, { reason: 'no' });
      const again = await h.call(bob, 'POST', `/v1/approvals/${r.id}/approve`, {});
      expect([again.status, again.body.code]).to.deep.equal([409, 'not-pending']);
    });

    it('refuses self-approval: the agent that asked cannot approve, even in an approver group', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 5 WHERE id = 5', subject: 'agent-7', issuer: idp.oidc.issuer });
      const agent7 = await h.approverToken('agent-7');
      const d = await h.call(agent7, 'POST', `/v1/approvals/${r.id}/approve`, { reason: 'me' });
      expect([d.status, d.body.code]).to.deep.equal([403, 'self-approval']);
      expect((await a.get(r.id)).state).to.equal('pending');
    });

    it('refuses an approver outside the rule\'s approver groups: 403 not-an-approver', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 6 WHERE id = 6' });
      expect((await h.call(carol, 'POST', `/v1/approvals/${r.id}/approve`, {})).body).to.deep.equal({
        code: 'not-an-approver', message: 'carol@example.com is not in an approver group for rule approve-card-updates (needs one of: payments-approvers)',
      });
    });

    it('minApprovals 2: one approval leaves it pending, the same approver twice is refused, a second approver approves', async () => {
      const r = await a.create({ ...base, minApprovals: 2, operation: 'UPDATE cards SET status = 7 WHERE id = 7' });
      expect((await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {})).body.state).to.equal('pending');
      expect((await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {})).body.code).to.equal('already-decided');
      expect((await h.call(bob, 'POST', `/v1/approvals/${r.id}/approve`, {})).body.state).to.equal('approved');
    });

    it('any deny rejects, even after an approval', async () => {
      const r = await a.create({ ...base, minApprovals: 2, operation: 'UPDATE cards SET status = 8 WHERE id = 8' });
      await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {});
      expect((await h.call(bob, 'POST', `/v1/approvals/${r.id}/deny`, { reason: 'wrong card' })).body.state).to.equal('denied');
    });
  });

  describe('scopes and re-requests', () => {
    it('defer: a retry of the same operation returns the same pending request, then its approval, which is usable once', async () => {
      const op = { ...base, mode: 'defer' as const, operation: 'UPDATE cards SET status = 9 WHERE id = 9' };
      const first = await h.call(podA, 'POST', '/v1/approvals', op);
      expect([first.status, first.body.state]).to.deep.equal([201, 'pending']);
      const retry = await h.call(podA, 'POST', '/v1/approvals', op);
      expect([retry.status, retry.body.id]).to.deep.equal([200, first.body.id]);
      await h.call(alice, 'POST', `/v1/approvals/${first.body.id}/approve`, {});
      const afterApproval = await h.call(podA, 'POST', '/v1/approvals', op);
      expect([afterApproval.status, afterApproval.body.id, afterApproval.body.state]).to.deep.equal([200, first.body.id, 'approved']);
      await a.use(first.body.id);
      const next = await h.call(podA, 'POST', '/v1/approvals', op);
      expect([next.status, next.body.state]).to.deep.equal([201, 'pending']);
      expect(next.body.id).to.not.equal(first.body.id);
    });

    it('once: an approval does not cover different operation bytes', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 10 WHERE id = 10' });
      await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {});
      const other = await a.create({ ...base, operation: 'UPDATE cards SET status = 10 WHERE id = 11' });
      expect([other.state, other.id === r.id]).to.deep.equal(['pending', false]);
    });

    it('once: an approval for pod A does not cover the same operation from pod B', async () => {
      const op = { ...base, operation: 'UPDATE cards SET status = 12 WHERE id = 12' };
      const r = await a.create(op);
      await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {});
      const fromB = await (await h.sidecar(POD_B)).create(op);
      expect(fromB.id).to.not.equal(r.id);
      expect(fromB.state).to.equal('pending');
    });

    it('window: the same identity reuses the approval for statements with the same rule and fingerprint until the window closes', async () => {
      const w = { ...base, scope: 'window' as const, windowMinutes: 10, fingerprint: 'fp:update-cards-status' };
      const r = await a.create({ ...w, operation: 'UPDATE cards SET status = 1 WHERE id = 100' });
      await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {});
      const again = await a.create({ ...w, operation: 'UPDATE cards SET status = 2 WHERE id = 101' });
      expect([again.id, again.state]).to.deep.equal([r.id, 'approved']);
      expect((await a.use(again.id)).uses).to.equal(1);
      expect((await a.use(again.id)).uses).to.equal(2);
      h.clock.advance(11 * 60_000);
      await h.srv.service.sweep();
      const later = await a.create({ ...w, operation: 'UPDATE cards SET status = 3 WHERE id = 102' });
      expect(later.id).to.not.equal(r.id);
      expect(later.state).to.equal('pending');
      expect((await a.get(r.id)).state).to.equal('expired');
    });
  });

  describe('waiting, expiry and cancellation', () => {
    it('a long-poll that runs out returns the request still pending', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 20 WHERE id = 20' });
      const got = await h.call(podA, 'GET', `/v1/approvals/${r.id}?wait=200ms`);
      expect([got.status, got.body.state]).to.deep.equal([200, 'pending']);
    });

    it('refuses a wait that is not a duration', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 21 WHERE id = 21' });
      expect((await h.call(podA, 'GET', `/v1/approvals/${r.id}?wait=soon`)).body.code).to.equal('bad-request');
    });

    it('expires a pending request after the TTL; the waiting sidecar learns it, and approvers can no longer decide', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 22 WHERE id = 22' });
      const waiting = a.waitForDecision(r.id, { timeoutMs: 20_000 });
      h.clock.advance(16 * 60_000);
      expect((await waiting).state).to.equal('expired');
      expect((await h.call(alice, 'POST', `/v1/approvals/${r.id}/approve`, {})).body.code).to.equal('not-pending');
    });

    it('cancel: a sidecar withdraws its pending request and its waiter sees cancelled', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 23 WHERE id = 23' });
      const waiting = a.waitForDecision(r.id, { timeoutMs: 20_000 });
      expect((await a.cancel(r.id)).state).to.equal('cancelled');
      expect((await waiting).state).to.equal('cancelled');
      await a.cancel(r.id).then(() => expect.fail('second cancel'), (e) => expect((e as ApprovalRefused).code).to.equal('not-pending'));
    });
  });

  describe('who sees what', () => {
    it('a sidecar cannot read another pod\'s request', async () => {
      const r = await a.create({ ...base, operation: 'UPDATE cards SET status = 30 WHERE id = 30' });
      const b = await idp.sa.token(POD_B);
      expect((await h.call(b, 'GET', `/v1/approvals/${r.id}`)).body.code).to.equal('forbidden');
      expect((await h.call(b, 'POST', `/v1/approvals/${r.id}/cancel`)).body.code).to.equal('forbidden');
    });

    it('a sidecar lists only its own pod\'s requests; an approver lists all, filtered by state', async () => {
      const b = await h.sidecar(POD_B);
      await b.create({ ...base, operation: 'UPDATE cards SET status = 31 WHERE id = 31' });
      const asA = await h.call(podA, 'GET', '/v1/approvals');
      expect(asA.body.items.every((r: { requester: { pod: { uid: string } } }) => r.requester.pod.uid === POD_A.uid)).to.equal(true);
      const pending = await h.call(alice, 'GET', '/v1/approvals?state=pending');
      const uids = new Set(pending.body.items.map((r: { requester: { pod: { uid: string } } }) => r.requester.pod.uid));
      expect([...uids].sort()).to.deep.equal([POD_A.uid, POD_B.uid].sort());
      expect(pending.body.items.every((r: { state: string }) => r.state === 'pending')).to.equal(true);
    });

    it('refuses an unknown state filter', async () => {
      expect((await h.call(alice, 'GET', '/v1/approvals?state=maybe')).body.code).to.equal('bad-request');
    });
  });

  describe('records', () => {
    it('writes every create, decision, expiry, cancellation and use to the chained audit trail, masked', async () => {
      await h.audit.flush();
      const text = fs.readFileSync(h.auditFile, 'utf8');
      const events = text.trim().split('\n').map((l) => JSON.parse(l));
      expect(events.every((e) => e.protocol === 'approval')).to.equal(true);
      expect(new Set(events.map((e) => e.event))).to.include.members(['approval-created', 'approval-approved', 'approval-denied', 'approval-decision', 'approval-expired', 'approval-cancelled', 'approval-used']);
      const approved = events.find((e) => e.event === 'approval-approved');
      expect(approved.approval.approver).to.match(/@example\.com$/);
      expect(approved.pod).to.deep.equal(POD_A);
      expect(events.map((e) => e.seq)).to.deep.equal(events.map((_, i) => i + 1));
      expect(text).to.not.include('4111 1111 1111 1111');
      expect(text).to.not.include('4111111111111111');
    });

    it('counts requests by result and tracks the pending gauge', async () => {
      const text = await registry.metrics();
      expect(text).to.match(/agentgate_approval_requests_total\{result="created"\} [1-9]/);
      expect(text).to.match(/agentgate_approval_requests_total\{result="approved"\} [1-9]/);
      expect(text).to.match(/agentgate_approval_requests_total\{result="reused"\} [1-9]/);
      expect(text).to.match(/^agentgate_approval_pending \d+$/m);
      expect(text).to.match(/agentgate_approval_decision_seconds_count\{result="denied"\} [1-9]/);
    });
  });
});

describe('approval service notifications', function () {
  this.timeout(60_000);
  let idp: Idp;
  let h: Harness;
  let hook: http.Server;
  const received: { attempt: number; body: { text: string } }[] = [];
  let attempts = 0;

  before(async () => {
    idp = await startIdp();
    hook = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        attempts++;
        // The first two deliveries fail, as a flaky chat service would.
        if (attempts <= 2) {
          res.writeHead(503).end('try later');
          return;
        }
        received.push({ attempt: attempts, body: JSON.parse(data) });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    const port = (hook.address() as AddressInfo).port;
    h = await startHarness(idp, {
      name: 'hooks',
      extraYaml: `webhooks:\n  - url: http://127.0.0.1:${port}/slack\n    retries: 4\n    backoffMs: 20\n  - url: http://127.0.0.1:1/unreachable\n    retries: 1\n    backoffMs: 10\n`,
    });
  });
  after(async () => {
    await h?.close();
    hook?.closeAllConnections();
    await new Promise<void>((r) => hook.close(() => r()));
    await idp?.close();
  });

  it('posts a Slack-compatible body with the masked operation and the approve/deny commands, retrying failures', async () => {
    const a = await h.sidecar(POD_A);
    const r = await a.create({ ...base, operation: UPDATE_SQL, justification: 'OPS-7' });
    expect(r.state).to.equal('pending'); // created although one webhook is unreachable and the other failing
    await h.srv.webhooks.drain();
    expect(received).to.have.length(1);
    expect(received[0].attempt).to.equal(3);
    const text = received[0].body.text;
    expect(text).to.include("UPDATE cards SET pan = '**** **** **** 1111' WHERE id = 7");
    expect(text).to.include(`agentgate approvals approve ${r.id} --server http://approvals.example`);
    expect(text).to.include(`agentgate approvals deny ${r.id} --server http://approvals.example`);
    expect(text).to.not.include('4111 1111 1111 1111');
    expect(await registry.metrics()).to.match(/agentgate_approval_webhook_deliveries_total\{outcome="failed"\} [1-9]/);
  });
});
