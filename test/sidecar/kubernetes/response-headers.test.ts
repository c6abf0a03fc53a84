// Which upstream response headers reach the agent, and masked how. No server involved.

import { expect } from 'chai';
import { responseHeaders } from '../../../sidecar/kubernetes/response-headers.js';
import { PAN, PAN_MASKED } from './harness.js';

describe('upstream response headers', () => {
  it('masks every Warning, however many there are', () => {
    const out = responseHeaders({ warning: [`299 - "card ${PAN}"`, '299 - "deprecated"'] }, 'id-1', {});
    expect(out.warning).to.deep.equal([`299 - "card ${PAN_MASKED}"`, '299 - "deprecated"']);
  });

  it('passes the headers clients read and drops the rest, setting its own Audit-Id', () => {
    const out = responseHeaders(
      {
        'content-type': 'application/json',
        'cache-control': 'no-cache, private',
        'x-kubernetes-pf-flowschema-uid': 'f',
        'set-cookie': 'session=1',
        'audit-id': 'upstream',
        'content-length': '12',
        'transfer-encoding': 'chunked',
        'x-aggregated-debug': `card ${PAN}`,
      },
      'mine',
      {},
    );
    expect(out).to.deep.equal({ 'content-type': 'application/json', 'cache-control': 'no-cache, private', 'x-kubernetes-pf-flowschema-uid': 'f', 'audit-id': 'mine' });
  });

  it('masks with the policy options (bin+last4)', () => {
    expect(responseHeaders({ location: `/api/v1/namespaces/x/configmaps/${PAN}` }, 'a', { keep: 'bin+last4' }).location).to.equal('/api/v1/namespaces/x/configmaps/411111******1111');
  });
});
