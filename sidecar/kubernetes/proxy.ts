// The sidecar's Kubernetes API proxy: the loopback HTTPS listener that unmodified
// in-cluster clients talk to. Start order matters for readiness: identity files
// (ca.crt, namespace, token) are written before the listener accepts, so a client
// that finds the files always finds a server that accepts them.

import https from 'node:https';
import path from 'node:path';
import type { Socket } from 'node:net';
import type { Logger } from '../../core/log.js';
import type { PolicySource } from '../../core/policy/types.js';
import type { AuditSink } from '../../core/audit/types.js';
import type { PodIdentity } from '../../core/identity.js';
import { podIdentityFromEnv } from '../../core/identity.js';
import type { KubernetesConfig } from './config.js';
import { withDefaults } from './config.js';
import { createServingIdentity } from './tls-identity.js';
import type { ServingIdentity } from './tls-identity.js';
import { LocalTokens, writeIdentityFiles } from './identity-files.js';
import { Authenticator } from './authenticate.js';
import { Upstream, resolveUpstream } from './upstream.js';
import { forward } from './forward.js';
import type { ForwardDeps } from './forward.js';
import { handleUpgrade } from './exec.js';
import { sendStatus, status } from './status.js';
import { AuditGate } from './audit-gate.js';
import { KubeApprovalGate } from './approval-gate.js';
import type { ApprovalClient } from '../../approval/client.js';

export interface KubernetesProxyDeps {
  policy: PolicySource;
  audit: AuditSink;
  log: Logger;
  /** Defaults to the downward-API env (AGENTGATE_POD_NAMESPACE, …). */
  pod?: PodIdentity;
  /**
   * The approval service (approval/client.ts). Without it, requests an `approve` rule stops
   * are refused with 403 saying no approval service is configured (fail closed).
   */
  approvals?: ApprovalClient | undefined;
  /** The sidecar's loopback CA and serving certificate, shared with its other listeners; created here when absent. */
  servingIdentity?: ServingIdentity;
}

export interface KubernetesProxy {
  /** True once the identity files are written and the listener is bound. */
  readonly ready: boolean;
  /** `host:port` actually bound (port 0 in config picks a free one). */
  readonly address: string;
  /** The CA agents trust (also written to `<identityDir>/ca.crt`). */
  readonly caPem: string;
  /** Issues a new local token now (the timer does this every tokenRotationSeconds). */
  rotateToken(): Promise<string>;
  /**
   * True for the current local token and the previous one during its grace period: other
   * listeners of the sidecar (the PostgreSQL proxy's token mode) should check agent tokens
   * here rather than re-reading the `token` file, which only ever holds the current one.
   */
  acceptsToken(token: string): boolean;
  /** Stops accepting, ends watches and exec sessions, closes the upstream pool. */
  close(): Promise<void>;
}

function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`kubernetes.listen: expected host:port, got '${listen}'`);
  return { host: m[1]!, port: Number(m[2]) };
}

export async function startKubernetesProxy(rawConfig: KubernetesConfig, deps: KubernetesProxyDeps): Promise<KubernetesProxy> {
  const config = withDefaults(rawConfig);
  const log = deps.log;
  const pod = deps.pod ?? podIdentityFromEnv();
  const resolved = resolveUpstream(config.upstream);
  if (!('none' in resolved) && path.resolve(path.dirname(resolved.tokenFile)) === path.resolve(config.identityDir)) {
    // The identity directory holds the agent's token: forwarding it would be no credential at all.
    throw new Error(`kubernetes.upstream.tokenFile (${resolved.tokenFile}) is in identityDir (${config.identityDir}): the upstream token must be the pod's real service-account token, mounted for the sidecar alone`);
  }
  const upstream = 'none' in resolved ? undefined : new Upstream(resolved);

  const identity = deps.servingIdentity ?? createServingIdentity();
  await writeIdentityFiles(config.identityDir, identity.caPem, pod?.namespace ?? 'default');
  const tokens = new LocalTokens({
    dir: config.identityDir,
    rotationSeconds: config.tokenRotationSeconds ?? 600,
    graceSeconds: config.tokenGraceSeconds ?? 120,
    onRotate: (err) => (err ? log.error({ err: err.message }, 'local token rotation failed; previous token stays valid') : log.debug('local token rotated')),
  });
  await tokens.start();
  const auth = new Authenticator(tokens, pod, config.oidc ?? []);

  const audit = new AuditGate(deps.audit, log);
  const fdeps: ForwardDeps = {
    auth,
    policy: () => deps.policy.current(),
    upstreamAuthorization: () => upstream?.authorization ?? '',
    noUpstream: 'none' in resolved ? resolved.none : undefined,
    impersonate: config.impersonate ?? false,
    upstream: () => upstream!,
    audit,
    auditBroken: () => audit.broken,
    log,
    cluster: config.cluster ?? 'kubernetes',
    level: config.auditLevel ?? 'Request',
    approvals: deps.approvals
      ? new KubeApprovalGate(deps.approvals, { cluster: config.cluster ?? 'kubernetes', retryAfterSeconds: config.approvalRetryAfterSeconds ?? 5 })
      : undefined,
  };
  const sessionDir = config.sessionDir ?? path.join(path.dirname(path.resolve(config.identityDir)), 'sessions');

  const sockets = new Set<Socket>();
  const server = https.createServer({ key: identity.keyPem, cert: identity.certPem, minVersion: 'TLSv1.2' }, (req, res) => {
    forward(req, res, fdeps).catch((err: Error) => {
      log.error({ err: err.message }, 'kubernetes proxy: request failed');
      sendStatus(res, status(500, 'InternalError', `agentgate: internal error: ${err.message}`));
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0; // watches and exec sessions are long-lived
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    handleUpgrade(req, socket, head, { ...fdeps, sessionDir }).catch((err: Error) => {
      log.error({ err: err.message }, 'kubernetes proxy: upgrade failed');
      socket.destroy();
    });
  });
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'kubernetes proxy: TLS handshake failed'));

  const { host, port } = splitHostPort(config.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const address = typeof addr === 'object' && addr ? `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}` : config.listen;
  log.info({ listen: address, upstream: upstream?.url.origin ?? 'none', identityDir: config.identityDir }, 'kubernetes proxy listening');

  let ready = true;
  return {
    get ready() {
      return ready;
    },
    address,
    caPem: identity.caPem,
    rotateToken: () => tokens.rotate(),
    acceptsToken: (token: string) => tokens.accepts(token),
    async close() {
      ready = false;
      tokens.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await upstream?.close();
    },
  };
}
