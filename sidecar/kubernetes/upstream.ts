// The real API server: one keep-alive undici pool, authenticated with the pod's own
// service-account token. The token and CA files are re-read when they change
// (kubelet rotates projected tokens well before expiry), so a long-running sidecar
// never forwards with an expired credential.

import { readFile, stat } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { Pool } from 'undici';
import type { UpstreamConfig } from './config.js';
import { KUBE_API_DIR } from './config.js';

const RECHECK_MS = 5_000;

export interface ResolvedUpstream {
  /** Empty when the pod has no token for the API server (then every request is refused). */
  server: string;
  caFile: string;
  tokenFile: string;
  connections: number;
}

/** Why there is no upstream to forward to (the pod has no token), or the resolved upstream. */
export function resolveUpstream(cfg: UpstreamConfig = {}, env: NodeJS.ProcessEnv = process.env): ResolvedUpstream | { none: string } {
  const tokenFile = cfg.tokenFile ?? (env.AGENTGATE_KUBERNETES_TOKEN_FILE !== undefined ? env.AGENTGATE_KUBERNETES_TOKEN_FILE : `${KUBE_API_DIR}/token`);
  if (tokenFile === '') {
    return { none: 'this pod has no service-account token for the API server (automountServiceAccountToken: false), so agentgate refuses every Kubernetes request; set agentgate.dev/kubernetes-access: "true" on the pod to give it one' };
  }
  let server = cfg.server;
  if (!server) {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT_HTTPS ?? env.KUBERNETES_SERVICE_PORT ?? '443';
    if (!host) throw new Error('kubernetes.upstream.server is not set and KUBERNETES_SERVICE_HOST is not in the environment');
    server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }
  return {
    server: server.replace(/\/+$/, ''),
    caFile: cfg.caFile ?? (env.AGENTGATE_KUBERNETES_CA_FILE || `${KUBE_API_DIR}/ca.crt`),
    tokenFile,
    connections: cfg.connections ?? 32,
  };
}

export class Upstream {
  readonly url: URL;
  private pool: Pool;
  private token: string;
  private ca: string;
  private tokenMtime = 0;
  private caMtime = 0;
  private timer: NodeJS.Timeout;

  constructor(readonly cfg: ResolvedUpstream) {
    this.url = new URL(cfg.server);
    if (this.url.protocol !== 'https:' && this.url.protocol !== 'http:') throw new Error(`upstream server must be https://, got ${cfg.server}`);
    this.token = readFileSync(cfg.tokenFile, 'utf8').trim();
    this.tokenMtime = statSync(cfg.tokenFile).mtimeMs;
    this.ca = this.url.protocol === 'https:' ? readFileSync(cfg.caFile, 'utf8') : '';
    if (this.ca) this.caMtime = statSync(cfg.caFile).mtimeMs;
    this.pool = this.newPool();
    this.timer = setInterval(() => void this.recheck(), RECHECK_MS);
    this.timer.unref();
  }

  get dispatcher(): Pool {
    return this.pool;
  }

  /** The `Authorization` value for the real API server. */
  get authorization(): string {
    return `Bearer ${this.token}`;
  }

  get caPem(): string {
    return this.ca;
  }

  private newPool(): Pool {
    return new Pool(this.url.origin, {
      connections: this.cfg.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      // Watches and log follows live for minutes: no body timeout.
      bodyTimeout: 0,
      headersTimeout: 60_000,
      connect: this.url.protocol === 'https:' ? { ca: this.ca, ...(isIP(this.url.hostname.replace(/^\[|\]$/g, '')) ? {} : { servername: this.url.hostname }), timeout: 5_000 } : { timeout: 5_000 },
    });
  }

  /** Re-reads the token and CA when their files changed (a new CA means a new pool); true when the token changed. */
  async recheck(): Promise<boolean> {
    let changed = false;
    try {
      const t = await stat(this.cfg.tokenFile);
      if (t.mtimeMs !== this.tokenMtime) {
        const token = (await readFile(this.cfg.tokenFile, 'utf8')).trim();
        if (token && token !== this.token) {
          this.token = token;
          changed = true;
        }
        this.tokenMtime = t.mtimeMs;
      }
      if (this.url.protocol === 'https:') {
        const c = await stat(this.cfg.caFile);
        if (c.mtimeMs !== this.caMtime) {
          const ca = await readFile(this.cfg.caFile, 'utf8');
          this.caMtime = c.mtimeMs;
          if (ca.includes('BEGIN CERTIFICATE') && ca !== this.ca) {
            this.ca = ca;
            const old = this.pool;
            this.pool = this.newPool();
            // Requests in flight (watches) finish on the old pool.
            void old.close().catch(() => undefined);
          }
        }
      }
    } catch {
      // Keep the last good credentials: a file being replaced is briefly absent.
    }
    return changed;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.pool.destroy().catch(() => undefined);
  }
}
