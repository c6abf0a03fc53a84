// The service configuration: the shipped example loads, and every mistake is
// refused with the file and, for YAML-level errors, line and column.

import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadApprovalConfig, parseApprovalConfig } from '../../approval/config.js';
import { openAuditWriter } from '../../core/audit/open.js';
import { ApprovalService } from '../../approval/service.js';
import { openPgliteStore } from '../../approval/store-pglite.js';
import { ApprovalError } from '../../approval/types.js';
import { POD_A } from './harness.js';

const AUTH = `approvers: { issuer: https://login.example.com, audience: agentgate-approvals }
sidecars: { issuer: https://kubernetes.default.svc, jwksUri: https://kubernetes.default.svc/openid/v1/jwks }
`;

function refused(text: string): string {
  try {
    parseApprovalConfig(text, '/etc/agentgate/approval.yaml');
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('approval service configuration', () => {
  it('loads the shipped example', () => {
    const cfg = loadApprovalConfig('approval/config.example.yaml');
    expect(cfg.listen).to.deep.equal({ host: '0.0.0.0', port: 8080 });
    expect(cfg.storage).to.deep.equal({ embedded: { dir: '/var/lib/agentgate/approvals' } });
    expect(cfg.approverGroups).to.deep.equal({ default: ['payments-approvers'], rules: { 'approve-card-updates': ['payments-leads'] } });
  });

  it('defaults to embedded in-memory storage, a 15-minute TTL and 8080/9090', () => {
    const cfg = parseApprovalConfig(AUTH, '/etc/agentgate/approval.yaml');
    expect([cfg.storage, cfg.ttlSeconds, cfg.listen.port, cfg.metrics && cfg.metrics.port]).to.deep.equal([{ embedded: {} }, 900, 8080, 9090]);
  });

  it('refuses a wrong type with file:line:col', () => {
    expect(refused(`${AUTH}ttlSeconds: soon\n`)).to.match(/^\/etc\/agentgate\/approval\.yaml:3:13: .*ttlSeconds/);
  });

  it('refuses a config without approvers: nobody could decide', () => {
    expect(refused('sidecars: { issuer: x, jwksFile: j.json }\n')).to.equal('/etc/agentgate/approval.yaml: approvers (issuer, audience) is required: without it nobody could decide');
  });

  it('refuses both storage backends at once', () => {
    expect(refused(`${AUTH}storage: { postgres: { url: "postgres://x" }, embedded: { dir: d } }\n`)).to.equal('/etc/agentgate/approval.yaml: storage: choose postgres or embedded, not both');
  });

  it('refuses sidecars without a way to verify their tokens', () => {
    expect(refused('approvers: { issuer: i, audience: a }\nsidecars: { issuer: https://kubernetes.default.svc }\n')).to.equal(
      '/etc/agentgate/approval.yaml: sidecars needs jwksUri, jwksFile or tokenReview',
    );
  });
});

describe('approval service fails closed on its audit trail', function () {
  this.timeout(60_000);
  it('refuses to create a request or record a decision it cannot audit, and leaves nothing decided behind', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-approval-audit-'));
    const audit = await openAuditWriter({ file: path.join(dir, 'audit.log') });
    await audit.close(); // a closed writer refuses every append, as a broken disk makes it do
    const store = await openPgliteStore();
    const service = new ApprovalService({ store, audit });
    try {
      const who = { kind: 'sidecar' as const, subject: 'system:serviceaccount:payments:agent', pod: POD_A };
      const err = await service.create(who, { protocol: 'postgres', connection: 'payments', operation: 'DELETE FROM cards', rule: 'r' }).then(
        () => undefined,
        (e: unknown) => e as ApprovalError,
      );
      expect(err?.code).to.equal('unavailable');
      expect(err?.message).to.match(/^the audit trail is unavailable, so no approval can be requested: /);
      expect((await store.list({})).map((r) => r.state)).to.deep.equal(['cancelled']);

      // A decision it cannot record is rolled back: the request stays pending.
      const now = new Date();
      await store.insert({
        id: 'r-decide', state: 'pending', protocol: 'postgres', connection: 'payments', operation: 'DELETE FROM cards', rule: 'r',
        requester: { pod: POD_A, serviceAccountSubject: who.subject }, identityKey: 'k', mode: 'wait', scope: 'once', windowMinutes: 0,
        approverGroups: [], minApprovals: 1, binding: 'b', fingerprint: 'f', createdAt: now.toISOString(), expiresAt: new Date(now.getTime() + 60_000).toISOString(),
      });
      const alice = { kind: 'approver' as const, subject: 'alice@example.com', groups: [], issuer: 'https://login.example.com' };
      const derr = await service.decide(alice, 'r-decide', 'approve', 'ok').then(() => undefined, (e: unknown) => e as ApprovalError);
      expect(derr?.code).to.equal('unavailable');
      const r = await store.get('r-decide');
      expect([r?.state, r?.decisions]).to.deep.equal(['pending', []]);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
