// Two replicas of the approval service sharing one real PostgreSQL 15 database,
// as in production: decisions race safely (exactly one wins, no lost update), a
// waiter on one replica learns a decision made on the other (LISTEN/NOTIFY), and
// expiry happens once however many replicas sweep.

import { expect } from 'chai';
import fs from 'node:fs';
import { openPostgresStore } from '../../approval/store-postgres.js';
import type { SqlApprovalStore } from '../../approval/store.js';
import { startCluster } from '../support/postgres.js';
import type { PgCluster } from '../support/postgres.js';
import { POD_A, startHarness, startIdp } from './harness.js';
import type { Harness, Idp } from './harness.js';

const base = { protocol: 'postgres' as const, connection: 'payments', rule: 'approve-card-updates', approverGroups: ['payments-approvers'] };

describe('approval service: two replicas on one PostgreSQL', function () {
  this.timeout(120_000);
  let cluster: PgCluster;
  let idp: Idp;
  let stores: SqlApprovalStore[];
  let r1: Harness;
  let r2: Harness;
  let alice: string;
  let bob: string;

  before(async () => {
    [cluster, idp] = await Promise.all([startCluster(), startIdp()]);
    // Both replicas migrate at once, as pods of one Deployment starting together do.
    stores = await Promise.all([openPostgresStore({ url: cluster.url() }), openPostgresStore({ url: cluster.url() })]);
    r1 = await startHarness(idp, { store: stores[0], name: 'replica-1' });
    r2 = await startHarness(idp, { store: stores[1], name: 'replica-2' });
    [alice, bob] = await Promise.all([r1.approverToken('alice@example.com'), r1.approverToken('bob@example.com')]);
  });
  after(async () => {
    await r1?.close();
    await r2?.close();
    await Promise.all((stores ?? []).map((s) => s.close()));
    await cluster?.stop();
    await idp?.close();
  });

  it('an approve on one replica and a deny on the other at the same moment: exactly one decision wins, 20 times out of 20', async () => {
    const a = await r1.sidecar(POD_A);
    for (let i = 0; i < 20; i++) {
      const req = await a.create({ ...base, operation: `UPDATE cards SET status = 1 WHERE id = ${1000 + i}` });
      const [x, y] = await Promise.all([
        r1.call(alice, 'POST', `/v1/approvals/${req.id}/approve`, { reason: 'ok' }),
        r2.call(bob, 'POST', `/v1/approvals/${req.id}/deny`, { reason: 'no' }),
      ]);
      const statuses = [x.status, y.status].sort();
      expect(statuses).to.deep.equal([200, 409]);
      const loser = x.status === 409 ? x : y;
      expect(loser.body.code).to.equal('not-pending');
      const final = await a.get(req.id);
      expect(final.decisions).to.have.length(1);
      expect(final.state).to.equal(final.decisions[0].verdict === 'approve' ? 'approved' : 'denied');
    }
  });

  it('two approvals on two replicas at once both count (no lost update) and reach minApprovals 2', async () => {
    const a = await r1.sidecar(POD_A);
    const req = await a.create({ ...base, minApprovals: 2, operation: 'UPDATE cards SET status = 2 WHERE id = 2000' });
    await Promise.all([
      r1.call(alice, 'POST', `/v1/approvals/${req.id}/approve`, {}),
      r2.call(bob, 'POST', `/v1/approvals/${req.id}/approve`, {}),
    ]);
    const final = await a.get(req.id);
    expect(final.state).to.equal('approved');
    expect(final.decisions.map((d) => d.approver).sort()).to.deep.equal(['alice@example.com', 'bob@example.com']);
  });

  it('a sidecar waiting on replica 2 learns a decision made on replica 1', async () => {
    const onR2 = await r2.sidecar(POD_A);
    const req = await onR2.create({ ...base, operation: 'UPDATE cards SET status = 3 WHERE id = 3000' });
    const waiting = onR2.waitForDecision(req.id, { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 100)); // let the long-poll reach replica 2 first
    await r1.call(alice, 'POST', `/v1/approvals/${req.id}/approve`, {});
    expect((await waiting).state).to.equal('approved');
  });

  it('expires a request once although both replicas sweep', async () => {
    const a = await r1.sidecar(POD_A);
    const req = await a.create({ ...base, operation: 'UPDATE cards SET status = 4 WHERE id = 4000' });
    r1.clock.advance(16 * 60_000);
    r2.clock.advance(16 * 60_000);
    await Promise.all([r1.srv.service.sweep(), r2.srv.service.sweep(), r1.srv.service.sweep(), r2.srv.service.sweep()]);
    expect((await a.get(req.id)).state).to.equal('expired');
    await Promise.all([r1.audit.flush(), r2.audit.flush()]);
    const expiries = [r1.auditFile, r2.auditFile]
      .flatMap((f) => fs.readFileSync(f, 'utf8').trim().split('\n'))
      .map((l) => JSON.parse(l))
      .filter((e) => e.event === 'approval-expired' && e.approval.id === req.id);
    expect(expiries).to.have.length(1);
  });
});
