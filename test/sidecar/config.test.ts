// The sidecar config file: every path in it is relative to the file, the kubernetes block's too.

import { expect } from 'chai';
import { parseSidecarConfig } from '../../sidecar/config.js';

describe('sidecar config: paths', () => {
  const text = [
    'kubernetes:',
    '  identityDir: ./identity',
    '  sessionDir: sessions',
    '  upstream: { server: "https://127.0.0.1:6443", caFile: ./upstream/ca.crt, tokenFile: ./upstream/token }',
    '  oidc: [{ issuer: "https://idp.example", audience: agentgate, caFile: ../idp-ca.pem }]',
    'policy: { file: ./policy.yaml }',
    'audit: { file: ./audit.jsonl }',
  ].join('\n');

  it('resolves the kubernetes block\'s paths against the config file\'s directory', () => {
    const c = parseSidecarConfig(text, '/etc/agentgate/config.yaml');
    expect(c.kubernetes?.identityDir).to.equal('/etc/agentgate/identity');
    expect(c.kubernetes?.sessionDir).to.equal('/etc/agentgate/sessions');
    expect(c.kubernetes?.upstream?.caFile).to.equal('/etc/agentgate/upstream/ca.crt');
    expect(c.kubernetes?.upstream?.tokenFile).to.equal('/etc/agentgate/upstream/token');
    expect(c.kubernetes?.oidc?.[0].caFile).to.equal('/etc/idp-ca.pem');
  });
});
