// Each stage of the request path on its own, with a recording exchange: what it refuses
// (and with which Status), what it fills in, and that it hands on to the next stage.

import { expect } from 'chai';
import type { IncomingMessage } from 'node:http';
import { compose } from '../../../sidecar/kubernetes/exchange.js';
import type { Exchange, Handler } from '../../../sidecar/kubernetes/exchange.js';
import { approvalHold, auditGate, authenticate, canonicalize, classify, decide } from '../../../sidecar/kubernetes/stages.js';
import { AuthenticationError } from '../../../sidecar/kubernetes/authenticate.js';
import type { ForwardDeps } from '../../../sidecar/kubernetes/forward.js';
import type { StatusObject } from '../../../sidecar/kubernetes/status.js';
import type { Identity } from '../../../core/identity.js';
import { policyFrom } from './harness.js';

const AGENT: Identity = { subject: 'system:serviceaccount:payments:agent', groups: ['system:serviceaccounts'], via: 'local-token' };

const POLICY = policyFrom(`
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: stages }
spec:
  default: deny
  rules:
    - name: read
      kubernetes: { verbs: [get, list, watch], resources: [configmaps, secrets] }
      action: allow
    - name: exec-approved
      kubernetes: { verbs: [create], resources: [pods/exec] }
      action: approve
`);

interface Recorded extends Exchange {
  refusals: StatusObject[];
  passed: boolean;
}

function exchange(o: { url: string; method?: string; headers?: Record<string, string>; deps?: Partial<ForwardDeps> }): Recorded {
  const req = { url: o.url, method: o.method ?? 'GET', headers: { authorization: 'Bearer local', ...o.headers } } as unknown as IncomingMessage;
  const deps = {
    auth: { authenticate: async (h: string | undefined) => { if (h !== 'Bearer local') throw new AuthenticationError('no such token'); return AGENT; } },
    policy: () => POLICY,
    upstreamAuthorization: () => 'Bearer real',
    impersonate: false,
    ...o.deps,
  } as unknown as ForwardDeps;
  const x: Recorded = {
    req, deps,
    ctx: { auditID: 'a', received: new Date(), req, cluster: 'c', level: 'Metadata' },
    labels: { verb: 'get', group: 'non-resource', decision: 'deny' },
    refusals: [],
    passed: false,
    refuse: (s) => void x.refusals.push(s),
    abandon: () => undefined,
    onGone: () => () => undefined,
  };
  return x;
}

const pass: Handler<Recorded> = async (x) => {
  x.passed = true;
};
const run = async (stages: Parameters<typeof compose<Recorded>>[0], x: Recorded) => {
  await compose(stages, pass)(x);
  return x;
};
const ADMIT = [authenticate, canonicalize, classify, decide];

describe('kubernetes request stages', () => {
  describe('compose', () => {
    it('runs the stages in order, then the last handler', async () => {
      const seen: string[] = [];
      const tag = (name: string) => (next: Handler<Recorded>) => async (x: Recorded) => {
        seen.push(name);
        return next(x);
      };
      await compose([tag('a'), tag('b'), tag('c')], async () => void seen.push('last'))(exchange({ url: '/' }));
      expect(seen).to.deep.equal(['a', 'b', 'c', 'last']);
    });
  });

  describe('authenticate', () => {
    it('sets the identity and passes on', async () => {
      const x = await run([authenticate], exchange({ url: '/' }));
      expect(x.identity).to.equal(AGENT);
      expect(x.passed).to.equal(true);
    });
    it('refuses an unknown token with a 401 Status', async () => {
      const x = await run([authenticate], exchange({ url: '/', headers: { authorization: 'Bearer nope' } }));
      expect(x.refusals.map((s) => [s.code, s.message])).to.deep.equal([[401, 'Unauthorized: agentgate: no such token']]);
      expect(x.passed).to.equal(false);
    });
  });

  describe('canonicalize', () => {
    it('sets the canonical target', async () => {
      const x = await run([canonicalize], exchange({ url: '/api/v1/namespaces/pay%6dents/configmaps' }));
      expect(x.target?.target).to.equal('/api/v1/namespaces/payments/configmaps');
      expect(x.passed).to.equal(true);
    });
    it('refuses an ambiguous target with a 400 Status before anything else', async () => {
      const x = await run([canonicalize], exchange({ url: '/api/v1/secrets?fieldSelector=metadata.name%3Da;b' }));
      expect(x.refusals.map((s) => [s.code, s.reason])).to.deep.equal([[400, 'BadRequest']]);
      expect(x.refusals[0]!.message).to.match(/^agentgate: query has a raw ';'/);
      expect(x.passed).to.equal(false);
    });
  });

  describe('classify', () => {
    it('reads the canonical target as the API server does and labels the metrics', async () => {
      const x = await run([canonicalize, classify], exchange({ url: '/api/v1/namespaces/payments/secrets?fieldSelector=metadata.name%3Ddb' }));
      expect(x.request).to.deep.include({ verb: 'list', namespace: 'payments', resource: 'secrets', name: 'db' });
      expect(x.labels).to.deep.include({ verb: 'list', group: 'core' });
    });
    it('refuses a field selector the server could not parse', async () => {
      const x = await run([canonicalize, classify], exchange({ url: '/api/v1/secrets?fieldSelector=metadata.name%3Da%2Cb' }));
      expect(x.refusals.map((s) => s.code)).to.deep.equal([400]);
    });
  });

  describe('decide', () => {
    it('allows what the policy allows, with the real credential upstream and JSON asked for', async () => {
      const x = await run(ADMIT, exchange({ url: '/api/v1/namespaces/payments/configmaps', headers: { accept: 'application/vnd.kubernetes.protobuf,application/json' } }));
      expect(x.passed).to.equal(true);
      expect(x.decision?.action).to.equal('allow');
      expect(x.headers).to.deep.include({ authorization: 'Bearer real', accept: 'application/json' });
    });
    it('refuses what the policy denies with a 403 Status', async () => {
      const x = await run(ADMIT, exchange({ url: '/api/v1/namespaces/payments/pods' }));
      expect(x.refusals.map((s) => [s.code, s.reason])).to.deep.equal([[403, 'Forbidden']]);
      expect(x.labels.decision).to.equal('deny');
    });
    it('refuses a resource request that accepts only protobuf with a 406 Status', async () => {
      const x = await run(ADMIT, exchange({ url: '/api/v1/namespaces/payments/configmaps', headers: { accept: 'application/vnd.kubernetes.protobuf' } }));
      expect(x.refusals.map((s) => [s.code, s.reason])).to.deep.equal([[406, 'NotAcceptable']]);
    });
    it('passes the Accept of an API document as the client sent it', async () => {
      const accept = 'application/com.github.proto-openapi.spec.v2@v1.0+protobuf';
      const x = await run(ADMIT, exchange({ url: '/openapi/v2', headers: { accept } }));
      expect(x.passed).to.equal(true);
      expect(x.headers?.accept).to.equal(accept);
    });
    it('refuses an approve decision when no approval service is configured', async () => {
      const x = await run(ADMIT, exchange({ url: '/api/v1/namespaces/payments/pods/web-0/exec?command=id' }));
      expect(x.refusals[0]!.message).to.include('no approval service is configured');
    });
    it('marks an approve decision held when an approval service is configured', async () => {
      const x = await run(ADMIT, exchange({ url: '/api/v1/namespaces/payments/pods/web-0/exec?command=id', deps: { approvals: {} as ForwardDeps['approvals'] } }));
      expect(x.passed).to.equal(true);
      expect(x.held).to.equal(true);
      expect(x.labels.decision).to.equal('approve');
    });
    it('refuses impersonation the policy does not allow, naming the attribute', async () => {
      const x = await run(ADMIT, exchange({ url: '/api/v1/namespaces/payments/configmaps', headers: { 'impersonate-user': 'admin' } }));
      expect(x.refusals.map((s) => s.code)).to.deep.equal([403]);
      expect(x.refusals[0]!.message).to.match(/^users "admin" is forbidden: User "system:serviceaccount:payments:agent" cannot impersonate users/);
    });
  });

  describe('audit gate', () => {
    it('refuses with 503 while the audit trail cannot record', async () => {
      const x = await run([...ADMIT, auditGate], exchange({ url: '/api/v1/namespaces/payments/configmaps', deps: { auditBroken: () => 'disk full' } }));
      expect(x.refusals.map((s) => [s.code, s.message])).to.deep.equal([[503, 'agentgate: the audit trail is unavailable (disk full); requests are refused until it can record them again']]);
      expect(x.labels.decision).to.equal('deny');
    });
    it('refuses with 403 when the pod has no API server credential', async () => {
      const x = await run([...ADMIT, auditGate], exchange({ url: '/api/v1/namespaces/payments/configmaps', deps: { noUpstream: 'no token' } }));
      expect(x.refusals.map((s) => [s.code, s.message])).to.deep.equal([[403, 'agentgate: no token']]);
    });
  });

  describe('approval hold', () => {
    it('passes a request that is not held without asking anyone', async () => {
      const x = await run([...ADMIT, approvalHold], exchange({ url: '/api/v1/namespaces/payments/configmaps' }));
      expect(x.passed).to.equal(true);
    });
    it('shows the approver the canonical target and forwards once approved', async () => {
      let asked = '';
      const approvals = { hold: async (r: { url: string }) => { asked = r.url; return { forward: true, reason: 'approved' }; } } as unknown as ForwardDeps['approvals'];
      const x = await run([...ADMIT, approvalHold], exchange({ url: '/api/v1/namespaces/pay%6dents/pods/web-0/exec?command=id', deps: { approvals } }));
      expect(asked).to.equal('/api/v1/namespaces/payments/pods/web-0/exec?command=id');
      expect(x.passed).to.equal(true);
    });
    it('answers with the approval service\'s refusal', async () => {
      const refusal = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403, message: 'denied by an approver' } as StatusObject;
      const approvals = { hold: async () => ({ forward: false, reason: 'denied', status: refusal }) } as unknown as ForwardDeps['approvals'];
      const x = await run([...ADMIT, approvalHold], exchange({ url: '/api/v1/namespaces/payments/pods/web-0/exec?command=id', deps: { approvals } }));
      expect(x.refusals).to.deep.equal([refusal]);
      expect(x.passed).to.equal(false);
    });
  });
});
