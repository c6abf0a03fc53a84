// A REAL OpenID provider for tests: node-oidc-provider 8 (the certified
// implementation), on a free loopback port. Each test principal is an OAuth client
// using the client_credentials grant with a resource indicator; the provider issues
// a JWT access token (RS256, its own JWKS at /jwks, discovery at
// /.well-known/openid-configuration) whose `sub` is the client id and whose `groups`
// claim comes from extraTokenClaims: exactly what an approver's IdP token carries.
//
//   const idp = await startOidcProvider({ audience: 'https://approvals.agentgate.test',   // resource indicators are absolute URIs
//     principals: { 'alice@example.com': ['payments-approvers'], 'agent-7': [] } });
//   const jwt = await idp.token('alice@example.com');   // iss = idp.issuer, aud = audience
//   await idp.close();

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { freePort } from './ports.js';

export interface OidcProviderHandle {
  issuer: string;
  jwksUri: string;
  audience: string;
  /** A fresh JWT access token for a configured principal (with its groups), optionally for another audience. */
  token(principal: string, audience?: string): Promise<string>;
  close(): Promise<void>;
}

export async function startOidcProvider(opts: { audience: string; principals: Record<string, string[]>; extraAudiences?: string[] }): Promise<OidcProviderHandle> {
  const moduleName = 'oidc-provider'; // untyped package: load it by name so tsc does not look for declarations
  const { default: Provider } = (await import(moduleName)) as unknown as { default: new (issuer: string, cfg: unknown) => OidcProvider };
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'test-rs256', alg: 'RS256', use: 'sig' };
  const secret = (id: string) => `secret-${Buffer.from(id).toString('hex')}`;
  const audiences = new Set([opts.audience, ...(opts.extraAudiences ?? [])]);
  const provider = new Provider(issuer, {
    clients: Object.keys(opts.principals).map((id) => ({
      client_id: id,
      client_secret: secret(id),
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    jwks: { keys: [jwk] },
    adapter: MemoryAdapter,
    ttl: { ClientCredentials: 600 },
    cookies: { keys: ['agentgate-test-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => opts.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => {
          if (!audiences.has(resource)) throw new Error(`unknown resource ${resource}`);
          return { scope: 'approvals', audience: resource, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
    extraTokenClaims: (_ctx: unknown, token: { clientId?: string }) => ({ groups: opts.principals[token.clientId ?? ''] ?? [] }),
  });
  const server = http.createServer(provider.callback());
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  const tokenUrl = `${issuer}/token`;
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    audience: opts.audience,
    async token(principal, audience = opts.audience) {
      const res = await fetch(tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: principal, client_secret: secret(principal), resource: audience, scope: 'approvals' }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!res.ok || !body.access_token) throw new Error(`oidc-provider refused a token for ${principal}: ${body.error}: ${body.error_description}`);
      return body.access_token;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      void (server.address() as AddressInfo | null);
    },
  };
}

/** The provider's storage adapter contract, in memory (one provider per test run). */
class MemoryAdapter {
  private static readonly store = new Map<string, unknown>();
  constructor(private readonly model: string) {}
  private key(id: string) {
    return `${this.model}:${id}`;
  }
  async upsert(id: string, payload: unknown) {
    MemoryAdapter.store.set(this.key(id), payload);
  }
  async find(id: string) {
    return MemoryAdapter.store.get(this.key(id));
  }
  async findByUserCode() {
    return undefined;
  }
  async findByUid() {
    return undefined;
  }
  async consume(id: string) {
    const v = MemoryAdapter.store.get(this.key(id)) as Record<string, unknown> | undefined;
    if (v) v.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string) {
    MemoryAdapter.store.delete(this.key(id));
  }
  async revokeByGrantId() {}
}

interface OidcProvider {
  callback(): http.RequestListener;
}
