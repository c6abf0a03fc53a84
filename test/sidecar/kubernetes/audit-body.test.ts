// What of a request body is recorded and shown to approvers: nothing of a credential-bearing
// request, the parsed and masked document of any other (escapes and YAML folding undone by
// the parser), never the raw bytes of one that does not parse. No server involved.

import { expect } from 'chai';
import { auditableBody, credentialBearing } from '../../../sidecar/kubernetes/audit-body.js';
import { operationOf } from '../../../sidecar/kubernetes/approval-gate.js';
import { requestInfo } from '../../../core/kube/request-info.js';
import { PAN, PAN_MASKED } from './harness.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const CM = requestInfo('PATCH', '/api/v1/namespaces/payments/configmaps/folded');

describe('request bodies in the audit trail', () => {
  it('names the requests whose bodies carry credentials', () => {
    const cases: [string, string][] = [
      ['POST', '/api/v1/namespaces/payments/secrets'],
      ['GET', '/api/v1/namespaces/payments/secrets'],
      ['POST', '/api/v1/namespaces/payments/serviceaccounts/agent/token'],
      ['POST', '/apis/authentication.k8s.io/v1/tokenreviews'],
      ['POST', '/apis/certificates.k8s.io/v1/certificatesigningrequests'],
      ['POST', '/api/v1/namespaces/payments/configmaps'],
      ['GET', '/api/v1/namespaces/payments/serviceaccounts/agent'],
    ];
    expect(cases.map(([m, u]) => credentialBearing(requestInfo(m, u)) ?? '-')).to.deep.equal([
      'Secret', 'Secret', 'service-account token', 'TokenReview', 'CertificateSigningRequest', '-', '-',
    ]);
  });

  it('records no body of a Secret create, masked or not', () => {
    const body = Buffer.from(JSON.stringify({ kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 'hunter2' }, data: { pan: b64(PAN) } }));
    expect(auditableBody(body, 'application/json', {}, requestInfo('POST', '/api/v1/namespaces/payments/secrets'))).to.equal(undefined);
  });

  it('masks the parsed apply-patch YAML: a PAN folded across lines and one spelled with \\u escapes', () => {
    const yaml = [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata: { name: folded }',
      'data:',
      '  note: >-',
      '    card 4111',
      '    1111 1111 1111',
      `  esc: "card \\u0034${PAN.slice(1)}"`,
      '',
    ].join('\n');
    const out = auditableBody(Buffer.from(yaml), 'application/apply-patch+yaml', {}, CM) as { data: Record<string, string> };
    expect(out.data).to.deep.equal({ note: 'card **** **** **** 1111', esc: `card ${PAN_MASKED}` });
  });

  it('masks a JSON body after decoding its escapes, and base64 in its annotations', () => {
    const json = `{"metadata":{"annotations":{"a":"${b64(PAN)}"}},"data":{"n":"\\u0034${PAN.slice(1)}"}}`;
    const out = auditableBody(Buffer.from(json), 'application/merge-patch+json', {}, CM) as any;
    expect([out.data.n, Buffer.from(out.metadata.annotations.a, 'base64').toString()]).to.deep.equal([PAN_MASKED, PAN_MASKED]);
  });

  it('records only the size and digest of a body that does not parse', () => {
    const out = auditableBody(Buffer.from(`card ${PAN} {`), 'application/json', {}, CM) as { agentgate: string };
    expect(out.agentgate).to.match(/^body not recorded: it is not JSON or YAML that parses \(application\/json, 23 bytes, sha256 [0-9a-f]{64}\)$/);
  });
});

describe('the operation an approver sees', () => {
  it('shows a Secret with its keys and without a value, bound by digest', () => {
    const body = Buffer.from(JSON.stringify({ kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 'hunter2' }, data: { pan: b64(PAN) } }));
    const op = operationOf({ method: 'POST', url: '/api/v1/namespaces/payments/secrets', request: requestInfo('POST', '/api/v1/namespaces/payments/secrets'), body });
    const lines = op.split('\n');
    expect(JSON.parse(lines[2]!)).to.deep.equal({ kind: 'Secret', metadata: { name: 'db', annotations: { 'agentgate.dev/redacted': 'true' } }, stringData: { password: '' }, data: { pan: '' } });
    expect(lines[3]).to.match(/^body: \d+ bytes, sha256 [0-9a-f]{64}$/);
    expect(op).not.to.contain('hunter2');
    expect(op).not.to.contain(b64(PAN));
  });

  it('shows other bodies masked, and the URL masked', () => {
    const body = Buffer.from(JSON.stringify({ data: { note: `card ${PAN}`, cvv: '123' } }));
    const url = `/api/v1/namespaces/payments/configmaps/${PAN}`;
    const op = operationOf({ method: 'PATCH', url, request: requestInfo('PATCH', url), body, contentType: 'application/merge-patch+json' });
    expect(op.split('\n').slice(0, 3)).to.deep.equal([
      `PATCH /api/v1/namespaces/payments/configmaps/${PAN_MASKED}`,
      `patch configmaps "${PAN_MASKED}" in namespace "payments"`,
      `{"data":{"note":"card ${PAN_MASKED}","cvv":"***"}}`,
    ]);
  });

  it('shows no body of a TokenReview, only its digest', () => {
    const body = Buffer.from(JSON.stringify({ spec: { token: 'eyJhbGciOi.secret.token' } }));
    const url = '/apis/authentication.k8s.io/v1/tokenreviews';
    const op = operationOf({ method: 'POST', url, request: requestInfo('POST', url), body });
    expect(op).not.to.contain('eyJ');
    expect(op.split('\n')).to.have.length(3);
  });
});
