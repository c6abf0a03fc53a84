// Masking by what the resource is: the request names Secrets, so every object in object
// position is masked as a Secret, with or without `kind` (list items, as the API server
// encodes them, have none). No server involved.

import { expect } from 'chai';
import { SecretMasker } from '../../../sidecar/kubernetes/secret-mask.js';
import { PAN, PAN_MASKED } from './harness.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

describe('Secret responses masked by the resource the request names', () => {
  const item = { metadata: { name: 'card-vault', namespace: 'payments' }, data: { pan: b64(PAN) }, type: 'Opaque' };

  it('masks list items that carry no kind', () => {
    const out = new SecretMasker('mask', {}).maskDocument({ kind: 'SecretList', apiVersion: 'v1', metadata: { resourceVersion: '9' }, items: [item] }) as any;
    expect(unb64(out.items[0].data.pan)).to.equal(PAN_MASKED);
  });

  it('masks a single Secret whose kind is missing', () => {
    const out = new SecretMasker('mask', {}).maskDocument(item) as any;
    expect(unb64(out.data.pan)).to.equal(PAN_MASKED);
  });

  it('masks the Secret of a watch event and of a Table row, kind or not', () => {
    const m = new SecretMasker('mask', {});
    const ev = m.maskDocument({ type: 'ADDED', object: item }) as any;
    const table = m.maskDocument({ kind: 'Table', apiVersion: 'meta.k8s.io/v1', rows: [{ cells: ['card-vault'], object: item }] }) as any;
    expect([unb64(ev.object.data.pan), unb64(table.rows[0].object.data.pan)]).to.deep.equal([PAN_MASKED, PAN_MASKED]);
  });

  it('redacts list items without kind with masking.secrets: redact', () => {
    const out = new SecretMasker('redact', {}).maskDocument({ kind: 'SecretList', items: [item] }) as any;
    expect(out.items[0].data).to.deep.equal({ pan: '' });
    expect(out.items[0].metadata.annotations).to.deep.equal({ 'agentgate.dev/redacted': 'true' });
  });

  it('returns a Secret that hides nothing unchanged', () => {
    const plain = { metadata: { name: 'x' }, data: { user: b64('svc-payments') } };
    expect(new SecretMasker('mask', {}).maskDocument(plain)).to.equal(plain);
  });
});
