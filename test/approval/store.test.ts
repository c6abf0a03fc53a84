// The approval store's contract, run unchanged against both backends: PGlite (the
// embedded default) and a real PostgreSQL 15 cluster (production). One schema,
// one set of migrations, the same behaviour.

import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { ApprovalStore, NewRequest } from '../../approval/store.js';
import { openPgliteStore } from '../../approval/store-pglite.js';
import { openPostgresStore } from '../../approval/store-postgres.js';
import { startCluster } from '../support/postgres.js';
import type { PgCluster } from '../support/postgres.js';
import { ApprovalError } from '../../approval/types.js';

const T0 = new Date('2030-01-01T00:00:00.000Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);

function newRequest(over: Partial<NewRequest> = {}): NewRequest {
  const uid = over.requester?.pod.uid ?? randomUUID();
  return {
    id: randomUUID(),
    state: 'pending',
    protocol: 'postgres',
    connection: 'payments',
    operation: "UPDATE cards SET status = 'blocked' WHERE id = 7",
    rule: 'approve-card-updates',
    requester: { pod: { namespace: 'payments', name: 'agent-0', uid, serviceAccount: 'agent' }, serviceAccountSubject: 'system:serviceaccount:payments:agent' },
    identityKey: `payments/agent-0/${uid}||`,
    mode: 'wait',
    scope: 'once',
    windowMinutes: 0,
    approverGroups: ['payments-approvers'],
    minApprovals: 1,
    binding: `b-${uid}`,
    fingerprint: `f-${uid}`,
    createdAt: T0.toISOString(),
    expiresAt: at(900).toISOString(),
    ...over,
  };
}

const approveAll = (r: { decisions: { verdict: string }[]; minApprovals: number }) =>
  r.decisions.some((d) => d.verdict === 'deny')
    ? { state: 'denied' as const }
    : r.decisions.length >= r.minApprovals ? { state: 'approved' as const, validUntil: at(1800) } : { state: 'pending' as const };
const decision = (approver: string, verdict: 'approve' | 'deny' = 'approve', s = 10) => ({ approver, verdict, reason: 'ok', at: at(s).toISOString() });
const mustBePending = (r: { state: string }) => {
  if (r.state !== 'pending') throw new ApprovalError('not-pending', `is ${r.state}`);
};

function storeContract(open: () => Promise<{ store: ApprovalStore; close: () => Promise<void> }>) {
  let store: ApprovalStore;
  let close: () => Promise<void>;
  before(async function () {
    this.timeout(120_000);
    ({ store, close } = await open());
  });
  after(async () => close?.());

  it('migrates idempotently: a second migrate on the same database changes nothing', async () => {
    await store.migrate();
    await store.migrate();
    expect(await store.ping()).to.equal(true);
  });

  it('round-trips every field of a request', async () => {
    const n = newRequest({ justification: 'ticket OPS-1', scope: 'window', windowMinutes: 30, approverGroups: ['a', 'b'], minApprovals: 2 });
    await store.insert(n);
    const r = await store.get(n.id);
    expect(r).to.deep.equal({
      id: n.id, state: 'pending', protocol: 'postgres', connection: 'payments', operation: n.operation, rule: n.rule,
      justification: 'ticket OPS-1', requester: n.requester, mode: 'wait', scope: 'window', windowMinutes: 30,
      approverGroups: ['a', 'b'], minApprovals: 2, binding: n.binding, fingerprint: n.fingerprint,
      createdAt: '2030-01-01T00:00:00.000Z', expiresAt: '2030-01-01T00:15:00.000Z', uses: 0, decisions: [],
    });
  });

  it('returns undefined for an unknown id', async () => {
    expect(await store.get(randomUUID())).to.equal(undefined);
  });

  it('records an approval and moves the request to approved with its validity', async () => {
    const n = newRequest();
    await store.insert(n);
    const r = await store.decide(n.id, decision('alice'), mustBePending, approveAll);
    expect(r.state).to.equal('approved');
    expect(r.decidedAt).to.equal(at(10).toISOString());
    expect(r.validUntil).to.equal(at(1800).toISOString());
    expect(r.decisions).to.deep.equal([{ approver: 'alice', verdict: 'approve', reason: 'ok', at: at(10).toISOString() }]);
  });

  it('keeps a request pending until minApprovals approvals are in', async () => {
    const n = newRequest({ minApprovals: 2 });
    await store.insert(n);
    expect((await store.decide(n.id, decision('alice'), mustBePending, approveAll)).state).to.equal('pending');
    expect((await store.decide(n.id, decision('bob', 'approve', 11), mustBePending, approveAll)).state).to.equal('approved');
  });

  it('rolls the decision back when the check refuses it', async () => {
    const n = newRequest();
    await store.insert(n);
    await store.decide(n.id, decision('alice'), () => {
      throw new ApprovalError('self-approval', 'no');
    }, approveAll).then(() => expect.fail('should refuse'), (e) => expect((e as ApprovalError).code).to.equal('self-approval'));
    const r = await store.get(n.id);
    expect(r?.state).to.equal('pending');
    expect(r?.decisions).to.deep.equal([]);
  });

  it('lets exactly one of two concurrent decisions on one request win', async () => {
    const n = newRequest();
    await store.insert(n);
    const results = await Promise.allSettled([
      store.decide(n.id, decision('alice', 'approve'), mustBePending, approveAll),
      store.decide(n.id, decision('bob', 'deny'), mustBePending, approveAll),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
    const r = await store.get(n.id);
    expect(r?.decisions).to.have.length(1);
    expect(r?.state).to.equal(r?.decisions[0].verdict === 'approve' ? 'approved' : 'denied');
  });

  it('finds a live once-approval by identity and binding, and not after its validity', async () => {
    const n = newRequest();
    await store.insert(n);
    await store.decide(n.id, decision('alice'), mustBePending, approveAll);
    const q = { identityKey: n.identityKey, binding: n.binding, rule: n.rule, fingerprint: 'other', now: at(20) };
    expect((await store.findReusable(q))?.id).to.equal(n.id);
    expect(await store.findReusable({ ...q, now: at(1800) })).to.equal(undefined);
    expect(await store.findReusable({ ...q, identityKey: 'someone/else||' })).to.equal(undefined);
  });

  it('finds a live window-approval by identity, rule and fingerprint, whatever the binding', async () => {
    const n = newRequest({ scope: 'window', windowMinutes: 30 });
    await store.insert(n);
    await store.decide(n.id, decision('alice'), mustBePending, approveAll);
    const q = { identityKey: n.identityKey, binding: 'another-statement', rule: n.rule, fingerprint: n.fingerprint, now: at(20) };
    expect((await store.findReusable(q))?.id).to.equal(n.id);
    expect(await store.findReusable({ ...q, rule: 'another-rule' })).to.equal(undefined);
  });

  it('finds the same operation still pending, so retries do not pile up requests', async () => {
    const n = newRequest();
    await store.insert(n);
    const q = { identityKey: n.identityKey, binding: n.binding, rule: n.rule, fingerprint: n.fingerprint, now: at(5) };
    expect((await store.findReusable(q))?.state).to.equal('pending');
    expect(await store.findReusable({ ...q, now: at(900) })).to.equal(undefined);
  });

  it('cancels a pending request once; a second cancel changes nothing', async () => {
    const n = newRequest();
    await store.insert(n);
    expect((await store.cancel(n.id, at(3))).changed).to.equal(true);
    const again = await store.cancel(n.id, at(4));
    expect(again.changed).to.equal(false);
    expect(again.request?.state).to.equal('cancelled');
  });

  it('uses a once-approval exactly once', async () => {
    const n = newRequest();
    await store.insert(n);
    await store.decide(n.id, decision('alice'), mustBePending, approveAll);
    const first = await store.use(n.id, at(30));
    expect(first.changed && first.request.state).to.equal('used');
    expect((await store.use(n.id, at(31))).changed).to.equal(false);
  });

  it('counts window uses while the window is open and refuses after it', async () => {
    const n = newRequest({ scope: 'window', windowMinutes: 30 });
    await store.insert(n);
    await store.decide(n.id, decision('alice'), mustBePending, approveAll);
    await store.use(n.id, at(30));
    const second = await store.use(n.id, at(40));
    expect(second.changed && [second.request.state, second.request.uses]).to.deep.equal(['approved', 2]);
    expect((await store.use(n.id, at(1800))).changed).to.equal(false);
  });

  it('expires a pending request past its TTL exactly once', async () => {
    const n = newRequest({ expiresAt: at(60).toISOString() });
    await store.insert(n);
    expect((await store.expireDue(at(59))).map((r) => r.id)).to.not.include(n.id);
    const swept = await Promise.all([store.expireDue(at(61)), store.expireDue(at(61))]);
    expect(swept.flat().filter((r) => r.id === n.id)).to.have.length(1);
    expect((await store.get(n.id))?.state).to.equal('expired');
  });

  it('lists by state and by pod, newest first', async () => {
    const uid = randomUUID();
    const pod = { namespace: 'payments', name: 'agent-1', uid, serviceAccount: 'agent' };
    const a = newRequest({ requester: { pod, serviceAccountSubject: 'system:serviceaccount:payments:agent' }, createdAt: at(1).toISOString() });
    const b = newRequest({ requester: { pod, serviceAccountSubject: 'system:serviceaccount:payments:agent' }, createdAt: at(2).toISOString() });
    await store.insert(a);
    await store.insert(b);
    await store.cancel(a.id, at(3));
    expect((await store.list({ podUid: uid })).map((r) => r.id)).to.deep.equal([b.id, a.id]);
    expect((await store.list({ podUid: uid, state: 'cancelled' })).map((r) => r.id)).to.deep.equal([a.id]);
  });

  it('counts requests by state', async () => {
    const counts = await store.countByState();
    expect(Object.keys(counts).sort()).to.deep.equal(['approved', 'cancelled', 'denied', 'expired', 'pending', 'used']);
    expect(counts.cancelled).to.be.greaterThan(0);
  });
}

describe('approval store on PGlite (embedded)', function () {
  this.timeout(60_000);
  storeContract(async () => {
    const store = await openPgliteStore();
    return { store, close: () => store.close() };
  });
});

describe('approval store on PostgreSQL 15 (real cluster)', function () {
  this.timeout(60_000);
  let cluster: PgCluster;
  storeContract(async () => {
    cluster = await startCluster();
    const store = await openPostgresStore({ url: cluster.url() });
    return {
      store,
      close: async () => {
        await store.close();
        await cluster.stop();
      },
    };
  });
});
