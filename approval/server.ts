// Assembles a running approval service from its config: store, service, API,
// metrics, notifications, audit. Used by `agentgate approval` and by tests, so the
// tests run exactly what ships.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { openAuditWriter } from '../core/audit/open.js';
import type { AuditSink } from '../core/audit/types.js';
import { enableDefaultMetrics, startMetricsServer } from '../core/metrics.js';
import { Authenticator, kubernetesTokenReviewer } from './auth.js';
import type { TokenReviewer } from './auth.js';
import type { ApprovalConfig } from './config.js';
import { createApiHandler } from './http.js';
import { ApprovalService } from './service.js';
import type { ApprovalStore } from './store.js';
import { openPgliteStore } from './store-pglite.js';
import { openPostgresStore } from './store-postgres.js';
import { WebhookNotifier } from './webhooks.js';

export interface RunningApprovalServer {
  url: string;
  port: number;
  metricsPort?: number;
  service: ApprovalService;
  store: ApprovalStore;
  webhooks: WebhookNotifier;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Use this store instead of opening the configured one (tests share one). It is not closed by close(). */
  store?: ApprovalStore;
  audit?: AuditSink;
  tokenReviewer?: TokenReviewer;
  now?: () => Date;
  sweepMs?: number;
}

export async function startApprovalServer(cfg: ApprovalConfig, opts: StartOptions = {}): Promise<RunningApprovalServer> {
  const store =
    opts.store ?? ('postgres' in cfg.storage ? await openPostgresStore({ url: cfg.storage.postgres.url }) : await openPgliteStore(cfg.storage.embedded.dir));
  const audit = opts.audit ?? (cfg.audit ? await openAuditWriter({ file: cfg.audit.file, signingKeyFile: cfg.audit.signingKeyFile }) : undefined);
  const webhooks = new WebhookNotifier(cfg.webhooks, cfg.publicUrl);
  const service = new ApprovalService({
    store,
    ttlSeconds: cfg.ttlSeconds,
    onceValiditySeconds: cfg.onceValiditySeconds,
    ruleGroups: cfg.approverGroups.rules,
    defaultGroups: cfg.approverGroups.default,
    minApprovalsFloor: cfg.minApprovals,
    requireApproveReason: cfg.requireApproveReason,
    audit,
    onCreated: (r) => webhooks.notify(r),
    now: opts.now,
    sweepMs: opts.sweepMs,
  });
  await service.start();
  const reviewer = opts.tokenReviewer ?? (cfg.auth.sidecars?.tokenReview ? await kubernetesTokenReviewer(cfg.auth.sidecars.tokenReview.kubeconfig) : undefined);
  const auth = new Authenticator(cfg.auth, reviewer);
  const server = http.createServer(createApiHandler({ service, auth, maxWaitSeconds: cfg.maxWaitSeconds }));
  // Long-polls hold requests up to maxWaitSeconds: keep the socket timeouts above that.
  server.requestTimeout = (cfg.maxWaitSeconds + 30) * 1000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.listen.port, cfg.listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let metricsServer: http.Server | undefined;
  if (cfg.metrics) {
    enableDefaultMetrics();
    metricsServer = await startMetricsServer(cfg.metrics.host, cfg.metrics.port);
  }
  let closing: Promise<void> | undefined;
  const host = cfg.listen.host === '0.0.0.0' || cfg.listen.host === '::' ? '127.0.0.1' : cfg.listen.host;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    metricsPort: metricsServer ? (metricsServer.address() as AddressInfo).port : undefined,
    service,
    store,
    webhooks,
    close() {
      closing ??= (async () => {
        // Stop taking requests and drop held long-polls first, so none reaches a closed store.
        const closed = new Promise<void>((r) => server.close(() => r()));
        server.closeAllConnections();
        await closed;
        await service.stop();
        if (metricsServer) await new Promise<void>((r) => metricsServer!.close(() => r()));
        await webhooks.drain();
        if (!opts.audit) await audit?.close();
        if (!opts.store) await store.close();
      })();
      return closing;
    },
  };
}
