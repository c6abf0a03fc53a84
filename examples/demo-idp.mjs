// DEMO ONLY — not an identity provider for production. `make demo` has no cluster and no
// company IdP, so this stands in for both: it signs (1) a pod-bound service-account token
// of audience `agentgate`, shaped like the projected token a kubelet mounts for the sidecar,
// and (2) an approver's OIDC access token, and serves the JWKS that verifies them.
//
//   node examples/demo-idp.mjs DIR   → writes DIR/{sidecar.token,alice.token,sidecar-jwks.json},
//                                      prints the approvers' issuer URL, serves until killed.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';

const dir = process.argv[2];
const { privateKey, publicKey } = await generateKeyPair('ES256');
const jwk = { ...(await exportJWK(publicKey)), kid: 'demo', alg: 'ES256', use: 'sig' };
const jwks = { keys: [jwk] };

const server = http.createServer((req, res) => {
  const base = `http://127.0.0.1:${server.address().port}`;
  if (req.url === '/.well-known/openid-configuration') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks` }));
  } else if (req.url === '/jwks') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(jwks));
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const issuer = `http://127.0.0.1:${server.address().port}`;
const sign = (claims, iss, aud) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'demo' }).setIssuer(iss).setAudience(aud).setIssuedAt().setExpirationTime('1h').sign(privateKey);

writeFileSync(path.join(dir, 'sidecar-jwks.json'), JSON.stringify(jwks));
writeFileSync(
  path.join(dir, 'sidecar.token'),
  await sign(
    {
      sub: 'system:serviceaccount:payments:agent',
      'kubernetes.io': { namespace: 'payments', pod: { name: 'agent-0', uid: 'demo' }, serviceaccount: { name: 'agent', uid: 'demo-sa' } },
    },
    'https://kubernetes.default.svc.cluster.local',
    'agentgate',
  ),
);
writeFileSync(path.join(dir, 'alice.token'), await sign({ sub: 'alice@example.com', groups: ['payments-oncall'] }, issuer, 'agentgate-approvals'));
process.stdout.write(`${issuer}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
