// How the Kubernetes proxy masks response bodies: Secrets (base64 data, stringData,
// kubectl's last-applied annotation, redact mode), the body plan per content type,
// and Secret watch streams cut anywhere. No server involved.

import { expect } from 'chai';
import { SecretMasker } from '../../../sidecar/kubernetes/secret-mask.js';
import { planBody, SecretStreamMasker } from '../../../sidecar/kubernetes/response-body.js';
import { requestInfo } from '../../../core/kube/request-info.js';
import { loadYamlDocuments } from '../../../core/yaml/validate.js';
import { kubernetesConfigSchema } from '../../../sidecar/kubernetes/config.js';
import { PAN, PAN_MASKED } from './harness.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

const secret = (extra: Record<string, unknown> = {}) => ({
  kind: 'Secret',
  apiVersion: 'v1',
  metadata: { name: 's', namespace: 'payments', annotations: { note: `owner card ${PAN}` } },
  data: { pan: b64(`${PAN}\n`), cvv: b64('123'), cert: b64('-----BEGIN CERTIFICATE-----') },
  ...extra,
});

describe('Secret masking', () => {
  it('decodes, masks and re-encodes data values, and masks metadata as text', () => {
    const out = new SecretMasker('mask', {}).maskDocument(secret()) as any;
    expect(out.data).to.deep.equal({ pan: b64(`${PAN_MASKED}\n`), cvv: b64('***'), cert: b64('-----BEGIN CERTIFICATE-----') });
    expect(out.metadata.annotations.note).to.equal(`owner card ${PAN_MASKED}`);
  });

  it('keeps binary values byte for byte when they hold no PAN', () => {
    const bin = Buffer.from([0, 255, 128, 10, 0x34, 0x31]);
    const out = new SecretMasker('mask', {}).maskDocument({ kind: 'Secret', data: { keystore: bin.toString('base64') } }) as any;
    expect(Buffer.from(out.data.keystore, 'base64')).to.deep.equal(bin);
  });

  it('masks stringData as text and stars card-data keys', () => {
    const out = new SecretMasker('mask', {}).maskDocument({ kind: 'Secret', stringData: { pan: PAN, pin: '1234' } }) as any;
    expect(out.stringData).to.deep.equal({ pan: PAN_MASKED, pin: '****' });
  });

  it("masks the Secret copy inside kubectl's last-applied-configuration annotation", () => {
    const applied = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, data: { pan: b64(PAN) } });
    const out = new SecretMasker('mask', {}).maskDocument(secret({ metadata: { name: 's', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': applied } } })) as any;
    const inner = JSON.parse(out.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']);
    expect(Buffer.from(inner.data.pan, 'base64').toString()).to.equal(PAN_MASKED);
  });

  it('redacts every value with masking.secrets: redact and says so in an annotation', () => {
    const out = new SecretMasker('redact', {}).maskDocument(secret({ stringData: { token: 'abc' } })) as any;
    expect(out.data).to.deep.equal({ pan: '', cvv: '', cert: '' });
    expect(out.stringData).to.deep.equal({ token: '' });
    expect(out.metadata.annotations['agentgate.dev/redacted']).to.equal('true');
  });

  it('masks every Secret of a list and of a Table', () => {
    const m = new SecretMasker('mask', {});
    const list = m.maskDocument({ kind: 'SecretList', metadata: {}, items: [secret(), secret()] }) as any;
    expect(list.items.map((i: any) => i.data.cvv)).to.deep.equal([b64('***'), b64('***')]);
    const table = m.maskDocument({ kind: 'Table', rows: [{ cells: ['s', `x ${PAN}`], object: secret() }] }) as any;
    expect(table.rows[0].cells[1]).to.equal(`x ${PAN_MASKED}`);
    expect(table.rows[0].object.data.cvv).to.equal(b64('***'));
  });

  it('masks a Secret watch stream event by event, however the bytes are cut', () => {
    const events = [secret(), secret({ metadata: { name: 't' } })].map((o, i) => `${JSON.stringify({ type: i ? 'MODIFIED' : 'ADDED', object: o })}\n`).join('');
    const bytes = Buffer.from(events);
    for (const cut of [1, 7, 100, bytes.length - 1]) {
      const m = new SecretStreamMasker(new SecretMasker('mask', {}), true);
      const out = Buffer.concat([m.write(bytes.subarray(0, cut)), m.write(bytes.subarray(cut)), m.end()]).toString();
      const lines = out.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.map((l) => [l.type, Buffer.from(l.object.data.pan, 'base64').toString()])).to.deep.equal([
        ['ADDED', `${PAN_MASKED}\n`],
        ['MODIFIED', `${PAN_MASKED}\n`],
      ]);
    }
  });
});

describe('response body plan', () => {
  const get = requestInfo('GET', '/api/v1/namespaces/a/configmaps/x');
  it('masks JSON, JSON watch streams and merge-patch JSON with the JSON masker', () => {
    for (const ct of ['application/json', 'application/json;stream=watch', 'application/merge-patch+json; charset=utf-8']) {
      expect(planBody(get, ct, 'mask', {}).kind, ct).to.equal('masked');
    }
  });
  it('masks text/plain (pods/log) with the text masker', () => {
    const p = planBody(requestInfo('GET', '/api/v1/namespaces/a/pods/p/log'), 'text/plain', 'mask', {});
    expect(p.kind).to.equal('masked');
    if (p.kind === 'masked') expect(Buffer.concat([p.masker.write(Buffer.from(`x ${PAN}`)), p.masker.end()]).toString()).to.equal(`x ${PAN_MASKED}`);
  });
  it('refuses protobuf, CBOR and a missing content type', () => {
    expect(planBody(get, 'application/vnd.kubernetes.protobuf', 'mask', {})).to.deep.equal({ kind: 'refuse', why: "the API server answered with 'application/vnd.kubernetes.protobuf' where JSON was requested" });
    expect(planBody(get, 'application/cbor', 'mask', {}).kind).to.equal('refuse');
    expect(planBody(get, undefined, 'mask', {})).to.deep.equal({ kind: 'refuse', why: 'the API server answered without a content type' });
  });
});

describe('kubernetes config block', () => {
  const check = (yaml: string) => loadYamlDocuments(yaml, 'sidecar.yaml', kubernetesConfigSchema)[0]!.errors.map((e) => `${e.line}:${e.col} ${e.message}`);
  it('accepts the documented example', () => {
    expect(
      check(`listen: 127.0.0.1:15443
identityDir: ./identity
upstream: { server: "https://127.0.0.1:6443", caFile: ./upstream/ca.crt, tokenFile: ./upstream/token }
oidc:
  - { issuer: "https://idp.example", audience: agentgate, jwksUri: "https://idp.example/jwks" }
impersonate: true
`),
    ).to.deep.equal([]);
  });
  it('points at a bad listen address and an HMAC algorithm', () => {
    const errs = check(`listen: localhost
oidc:
  - { issuer: "https://idp.example", audience: agentgate, algorithms: [HS256] }
`);
    expect(errs[0]).to.match(/^1:9 listen: invalid value 'localhost' \(host:port, e\.g\. 127\.0\.0\.1:15443\)/);
    expect(errs.join('\n')).to.contain('HS256');
  });
});
