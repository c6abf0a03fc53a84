// OIDC identities are namespaced like kube-apiserver's --oidc-username-prefix and
// --oidc-groups-prefix: a JWT from a configured issuer cannot pass for a service account
// or claim a Kubernetes group. Issuer: the REAL OpenID provider of the tests
// (node-oidc-provider, test/support/oidc-provider.ts); API server: the double, with
// impersonation on so the upstream name the proxy sends is visible.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { Agent, request } from 'undici';
import { startOidcProvider } from '../../support/oidc-provider.js';
import type { OidcProviderHandle } from '../../support/oidc-provider.js';
import { loadYamlDocuments } from '../../../core/yaml/validate.js';
import { kubernetesConfigSchema } from '../../../sidecar/kubernetes/config.js';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';

const AUDIENCE = 'https://kube.agentgate.test';
const ADMIN_SA = 'system:serviceaccount:kube-system:admin';

describe('kubernetes proxy: OIDC identities are prefixed (issuer: a real OpenID provider)', function () {
  this.timeout(60_000);
  let idp: OidcProviderHandle;
  const harnesses: Harness[] = [];

  before(async () => {
    idp = await startOidcProvider({ audience: AUDIENCE, principals: { [ADMIN_SA]: ['system:masters'], 'agent-7': ['models'], 'claims-masters': ['system:masters'] } });
  });
  after(async () => {
    for (const h of harnesses) await h.stop();
    await idp?.close();
  });

  async function harness(prefixes: { usernamePrefix?: string; groupsPrefix?: string } = {}): Promise<Harness> {
    const h = await startHarness({
      config: { impersonate: true, oidc: [{ issuer: idp.issuer, audience: AUDIENCE, ...prefixes }] },
      policy: `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: oidc-prefix }
spec:
  rules:
    - name: service-accounts-read
      subjects: ["system:serviceaccount:*"]
      kubernetes: { verbs: [get, list], resources: [configmaps] }
      action: allow
    - name: masters-read
      groups: ["system:masters"]
      kubernetes: { verbs: [get, list], resources: [configmaps] }
      action: allow
    - name: models-read
      groups: ["oidc:models", "${idp.issuer}#models"]
      kubernetes: { verbs: [get, list], resources: [configmaps] }
      action: allow
`,
    });
    harnesses.push(h);
    return h;
  }

  async function get(h: Harness, principal: string) {
    const dispatcher = new Agent({ connect: { ca: await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8') } });
    try {
      const res = await request(`https://${h.proxy.address}/api/v1/namespaces/payments/configmaps`, { dispatcher, headers: { authorization: `Bearer ${await idp.token(principal)}` } });
      const body = (await res.body.json()) as { message?: string };
      const ev = (await h.events()).find((e) => e.auditID === res.headers['audit-id']);
      const upstream = h.double.requests.at(-1);
      return { status: res.statusCode, message: body.message, user: ev?.user, upstream };
    } finally {
      await dispatcher.close();
    }
  }

  it('prefixes a subject that claims a service account with the issuer: no service-account rule matches it', async () => {
    const h = await harness();
    h.double.requests.length = 0;
    const r = await get(h, ADMIN_SA);
    expect(r.status).to.equal(403);
    expect(r.user).to.deep.equal({
      username: `${idp.issuer}#${ADMIN_SA}`,
      groups: [`${idp.issuer}#system:masters`, 'system:authenticated'],
      extra: { 'agentgate.dev/identity': ['oidc'], 'agentgate.dev/issuer': [idp.issuer] },
    });
    expect(h.double.requests).to.deep.equal([]);
  });

  it('forwards the prefixed name and groups when impersonating', async () => {
    const h = await harness();
    const r = await get(h, 'agent-7');
    expect(r.status).to.equal(200);
    expect([r.upstream?.headers['impersonate-user'], r.upstream?.headers['impersonate-group']]).to.deep.equal([`${idp.issuer}#agent-7`, `${idp.issuer}#models`]);
  });

  it('uses a configured prefix instead of the issuer', async () => {
    const h = await harness({ usernamePrefix: 'oidc:', groupsPrefix: 'oidc:' });
    const r = await get(h, 'agent-7');
    expect(r.status).to.equal(200);
    expect(r.user?.username).to.equal('oidc:agent-7');
    expect(r.user?.groups).to.deep.equal(['oidc:models', 'system:authenticated']);
  });

  it("refuses a system: name even when prefixes are turned off with '-'", async () => {
    const h = await harness({ usernamePrefix: '-', groupsPrefix: '-' });
    const r = await get(h, ADMIN_SA);
    expect(r.status).to.equal(401);
    expect(r.message).to.equal(`Unauthorized: agentgate: JWT subject '${ADMIN_SA}' is refused: names starting with 'system:' belong to Kubernetes, not to an OIDC issuer`);
  });

  it("refuses a system: group when group prefixes are turned off with '-'", async () => {
    const h = await harness({ groupsPrefix: '-' });
    const r = await get(h, 'claims-masters');
    expect(r.status).to.equal(401);
    expect(r.message).to.equal("Unauthorized: agentgate: JWT group 'system:masters' is refused: groups starting with 'system:' belong to Kubernetes, not to an OIDC issuer");
  });

  it('refuses a configured prefix that is itself a system: name', () => {
    const errs = loadYamlDocuments(`oidc:\n  - { issuer: "https://idp.example", audience: agentgate, usernamePrefix: "system:" }\n`, 'sidecar.yaml', kubernetesConfigSchema)[0]!.errors;
    expect(errs.map((e) => e.message).join('\n')).to.contain("never 'system:'");
  });
});
