// Starting and stopping a whole sidecar from a validated config: policy source,
// audit writer, SQL classifier, the PostgreSQL listeners, the Kubernetes proxy,
// health and metrics. `agentgate sidecar` is a thin CLI around this; tests start it
// in-process the same way.

import type http from 'node:http';
import type { Identity } from '../core/identity.js';
import { podIdentityFromEnv, serviceAccountGroups, serviceAccountSubject } from '../core/identity.js';
import { createLogger } from '../core/log.js';
import type { Logger } from '../core/log.js';
import { enableDefaultMetrics, startMetricsServer } from '../core/metrics.js';
import { FilePolicySource } from '../core/policy/source.js';
import { openAuditWriter } from '../core/audit/open.js';
import type { AuditSink } from '../core/audit/types.js';
import type { MaskOptions } from '../core/mask/index.js';
import type { MaskingSpec } from '../core/policy/types.js';
import { SqlClassifier, loadSqlParser } from '../core/sql/index.js';
import { startKubernetesProxy } from './kubernetes/proxy.js';
import type { KubernetesProxy } from './kubernetes/proxy.js';
import { withDefaults } from './kubernetes/config.js';
import type { SidecarConfig, PostgresConnectionConfig } from './config.js';
import { SecretFile } from './config.js';
import { startHealthServer } from './health.js';
import { PgListener } from './postgres/listener.js';
import type { ClientAuthenticator } from './postgres/listener.js';
import { policyMasker } from './postgres/masker.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Agent, Pool, setGlobalDispatcher } from 'undici';
import { ApprovalClient } from '../approval/client.js';
import { PgApprovalGate } from './postgres/approval-gate.js';
import { RotatingTokenFile } from './postgres/agent-token.js';
import type { ApprovalServiceConfig } from './config.js';
import { Authenticator } from './kubernetes/authenticate.js';
import { LocalTokens } from './kubernetes/identity-files.js';
import crypto from 'node:crypto';
import { createServingIdentity } from './kubernetes/tls-identity.js';

export interface RunningSidecar {
  readonly postgres: PgListener[];
  /** The loopback CA clients of every listener verify against (also `<identityDir>/ca.crt`). */
  readonly caPem?: string;
  readonly kubernetes?: KubernetesProxy;
  readonly policy: FilePolicySource;
  readonly audit: AuditSink;
  /** Empty when ready, else the reasons. */
  notReady(): string[];
  /** SIGTERM behaviour: unready, stop accepting, let statements finish, close, flush audit. */
  stop(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  /** Serve health and metrics (default true). */
  servePorts?: boolean;
}

/** The identity of a trusted loopback client: the pod's service account, when known. */
export function podIdentity(): Identity {
  const pod = podIdentityFromEnv();
  if (pod) return { subject: serviceAccountSubject(pod.namespace, pod.serviceAccount), groups: serviceAccountGroups(pod.namespace), via: 'trust', pod };
  return { subject: process.env.AGENTGATE_SUBJECT ?? 'local', groups: [], via: 'trust' };
}

/** Checks an agent token: current, or previous within its rotation grace period. */
type TokenCheck = (token: string) => Promise<boolean>;

function authenticator(c: PostgresConnectionConfig, oidc: Authenticator | undefined, agentToken: TokenCheck | undefined): ClientAuthenticator {
  const trusted = podIdentity();
  return {
    mode: c.clientAuth.mode,
    trusted: () => trusted,
    async verify(password) {
      if (agentToken && (await agentToken(password))) return { ...trusted, via: 'local-token' };
      // A JWT from one of the kubernetes block's OIDC issuers: its subject is the identity.
      if (oidc && /^[\w-]+\.[\w-]+\.[\w-]+$/.test(password)) {
        return oidc.authenticate(`Bearer ${password}`).catch(() => undefined);
      }
      return undefined;
    },
  };
}

/** The OIDC verifier of the kubernetes block (jose, JWKS), without its local tokens. */
function oidcVerifier(config: SidecarConfig): Authenticator | undefined {
  const issuers = config.kubernetes?.oidc;
  if (!issuers?.length) return undefined;
  const none = new LocalTokens({ dir: os.tmpdir(), rotationSeconds: 86400, graceSeconds: 0 });
  return new Authenticator(none, podIdentityFromEnv(), issuers);
}

/**
 * The agent-token check of a connection in `token` mode. The Kubernetes proxy's own token
 * file is checked by that proxy (it keeps the previous token through its grace period);
 * any other file is watched here with the same rule.
 */
function agentTokenCheck(c: PostgresConnectionConfig, config: SidecarConfig, kubernetes: () => KubernetesProxy | undefined, watchers: RotatingTokenFile[]): TokenCheck | undefined {
  const file = c.clientAuth.tokenFile;
  if (c.clientAuth.mode !== 'token' || !file) return undefined;
  const identityDir = config.kubernetes ? withDefaults(config.kubernetes).identityDir : undefined;
  if (identityDir && path.resolve(path.dirname(config.file), identityDir, 'token') === file) {
    return async (t) => kubernetes()?.acceptsToken(t) ?? false;
  }
  const w = new RotatingTokenFile(file, c.clientAuth.tokenGraceSeconds).start();
  watchers.push(w);
  return (t) => w.accepts(t);
}

/**
 * The approval service client. A private CA is trusted for the service's origin only: fetch
 * goes through a global dispatcher that gives that origin its own connection pool.
 */
function approvalClient(a: ApprovalServiceConfig): ApprovalClient {
  if (a.caFile) {
    const ca = [...tls.rootCertificates, fs.readFileSync(a.caFile, 'utf8')];
    const origin = new URL(a.url).origin;
    setGlobalDispatcher(
      new Agent({
        factory: (o, opts) => (String(o) === origin ? new Pool(o, { ...opts, connect: { ca } }) : new Pool(o, opts)),
      }),
    );
  }
  return new ApprovalClient({ url: a.url, tokenFile: a.tokenFile, timeoutMs: a.timeoutSeconds * 1000, pollMs: a.pollSeconds * 1000 });
}

export async function startSidecar(config: SidecarConfig, opts: StartOptions = {}): Promise<RunningSidecar> {
  const log = opts.log ?? createLogger('sidecar');
  const policy = new FilePolicySource(config.policy.file, { logger: log }).start();
  // The trail masks with the policy in force: a reload that changes `spec.masking` applies from the next event.
  let maskingSpec: MaskingSpec | undefined;
  let auditMaskOptions: MaskOptions | undefined;
  const maskOptions = () => {
    const m = policy.current().masking;
    if (m !== maskingSpec) {
      maskingSpec = m;
      auditMaskOptions = m ? { keep: m.pan, cardFields: m.fields } : undefined;
    }
    return auditMaskOptions;
  };
  const audit = await openAuditWriter({
    file: config.audit.file,
    signingKeyFile: config.audit.signingKeyFile,
    maskOptions,
    onError: (err) => log.error({ err: err.message }, 'audit sink failed: refusing statements and requests until it can write again'),
    onRecover: (reason) => log.info({ recoveredFrom: reason }, 'audit sink writes again: statements and requests are accepted'),
  });
  // One answer for both proxies: the writer's own health (backlog, write error, closed).
  const auditHealthy = () => audit.health().ok;
  await loadSqlParser();
  const classifier = new SqlClassifier();
  const masker = policyMasker(policy);

  const oidc = oidcVerifier(config);
  // One client for both proxies: the PostgreSQL gate and the Kubernetes proxy's own gate.
  const approvalService = config.approval ? approvalClient(config.approval) : undefined;
  const approvals = approvalService ? new PgApprovalGate(approvalService) : undefined;
  const tokenWatchers: RotatingTokenFile[] = [];
  const listeners: PgListener[] = [];
  const servers: http.Server[] = [];
  let kubernetes: KubernetesProxy | undefined;
  let draining = false;
  const stopAll = async () => {
    await Promise.all(listeners.map((l) => l.close()));
    await kubernetes?.close();
    for (const s of servers) s.close();
    for (const w of tokenWatchers) w.stop();
    policy.close();
  };
  // One loopback CA for every listener of the sidecar: agents trust the one `ca.crt` the
  // Kubernetes proxy writes into the identity directory, for the API and for PostgreSQL.
  const serving = config.kubernetes || config.postgres.some((c) => c.clientTls.mode !== 'disable') ? createServingIdentity() : undefined;
  const clientTlsContext = serving ? tls.createSecureContext({ key: serving.keyPem, cert: serving.certPem, minVersion: 'TLSv1.2' }) : undefined;
  try {
    // The Kubernetes proxy first: it writes the agent token that `token` mode checks.
    if (config.kubernetes) {
      kubernetes = await startKubernetesProxy(withDefaults(config.kubernetes), {
        policy,
        audit,
        log: log.child({ proxy: 'kubernetes' }),
        pod: podIdentityFromEnv(),
        approvals: approvalService,
        servingIdentity: serving,
      });
    }
    for (const c of config.postgres) {
      const secret = c.upstream.passwordFile ? new SecretFile(c.upstream.passwordFile) : undefined;
      const ca = c.upstream.tls.caFile ? fs.readFileSync(c.upstream.tls.caFile) : undefined;
      const l = new PgListener(
        {
          name: c.name,
          host: c.listen.host,
          port: c.listen.port,
          maxMessageBytes: c.maxMessageBytes,
          upstream: {
            host: c.upstream.host,
            port: c.upstream.port,
            database: c.upstream.database,
            user: c.upstream.user,
            tls: { mode: c.upstream.tls.mode, ca, serverName: c.upstream.tls.serverName },
            connectTimeoutMs: c.upstream.connectTimeoutSeconds * 1000,
          },
          password: secret ? () => secret.read() : async () => '',
          clientTls: { mode: c.clientTls.mode, context: c.clientTls.mode === 'disable' ? undefined : clientTlsContext },
        },
        {
          policy,
          classifier,
          masker,
          audit,
          log: log.child({ proxy: 'postgres', connection: c.name }),
          auth: authenticator(c, oidc, agentTokenCheck(c, config, () => kubernetes, tokenWatchers)),
          auditHealthy,
          approvals,
        },
      );
      await l.listen();
      listeners.push(l);
    }
    const notReady = () => {
      const reasons: string[] = [];
      if (draining) reasons.push('draining');
      const ah = audit.health();
      if (!ah.ok) reasons.push(`the audit trail cannot be written: ${ah.reason}`);
      if (!policy.ready) reasons.push(`no valid policy loaded from ${config.policy.file}`);
      for (const l of listeners) if (!l.listening) reasons.push(`postgres connection "${l.options.name}" is not listening`);
      if (kubernetes && !kubernetes.ready) reasons.push('kubernetes proxy is not ready');
      return reasons;
    };
    if (opts.servePorts !== false) {
      enableDefaultMetrics();
      servers.push(await startMetricsServer(config.metrics.host, config.metrics.port));
      servers.push(await startHealthServer(config.health.host, config.health.port, notReady));
    }
    const now = new Date().toISOString();
    audit.append({ auditID: crypto.randomUUID(), stage: 'ResponseComplete', protocol: 'system', event: 'sidecar-start', verb: 'start', requestReceivedTimestamp: now, stageTimestamp: now, pod: podIdentityFromEnv() });
    log.info({ postgres: listeners.map((l) => `${l.options.name}@${l.options.host}:${l.port}`), kubernetes: kubernetes?.address }, 'sidecar started');
    return {
      postgres: listeners,
      caPem: serving?.caPem,
      kubernetes,
      policy,
      audit,
      notReady,
      async stop() {
        if (draining) return;
        draining = true;
        log.info({ drainSeconds: config.drainSeconds }, 'draining: no new connections, open ones close after their statement');
        await Promise.all(listeners.map((l) => l.drain(config.drainSeconds * 1000)));
        await kubernetes?.close();
        const t = new Date().toISOString();
        audit.append({ auditID: crypto.randomUUID(), stage: 'ResponseComplete', protocol: 'system', event: 'sidecar-stop', verb: 'stop', requestReceivedTimestamp: t, stageTimestamp: t, pod: podIdentityFromEnv() });
        await audit.close();
        for (const s of servers) s.close();
        for (const w of tokenWatchers) w.stop();
        policy.close();
      },
    };
  } catch (err) {
    await stopAll();
    await audit.close().catch(() => undefined);
    throw err;
  }
}
