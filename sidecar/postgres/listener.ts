// One PostgreSQL connection of the sidecar config: a loopback listener that takes
// clients through startup and authentication, opens the upstream connection with
// the real credentials, and hands both sockets to a Session. Cancel requests are
// answered the PgBouncer way: every client gets a random key from the proxy, and a
// cancel with that key opens a new upstream connection carrying the server's key.

import net from 'node:net';
import crypto from 'node:crypto';
import type { Identity } from '../../core/identity.js';
import type { AuditSink } from '../../core/audit/types.js';
import type { Decision, PolicySource } from '../../core/policy/types.js';
import type { Logger } from '../../core/log.js';
import { authenticationRequest, backendKeyData, cancelRequest, errorResponse, parameterStatus, readyForQuery } from './wire.js';
import { ClientLeft, StartupRefused, negotiateProtocolVersion, readStartup, readPassword } from './client-startup.js';
import type { ClientTls } from './client-startup.js';
import { readStartupSettings } from './startup-settings.js';
import { decideSql } from './decide.js';
import { UpstreamError, connectUpstream, openTransport, runSetupQuery } from './upstream.js';
import { MaskingCatalog, TypeCatalog, USER_TYPES_SQL, USER_TYPES_WIDTH, catalogFromRows, columnNames } from './value-types.js';
import type { UpstreamTarget } from './upstream.js';
import { Session } from './session.js';
import type { SqlClassifier } from './decide.js';
import type { TextMasker } from './result-mask.js';
import { boundMetrics, startupRefusals } from './metrics.js';
import type { BoundMetrics } from './metrics.js';
import type { PgApprovalGate } from './approval-gate.js';

/** How clients prove who they are: `trust` (anyone on loopback is the pod) or `token`. */
export interface ClientAuthenticator {
  mode: 'trust' | 'token';
  /** The identity of a trusted loopback client (the pod's). */
  trusted(): Identity;
  /** Checks the password of `token` mode (local agent token or OIDC JWT); undefined when refused. */
  verify(password: string): Promise<Identity | undefined>;
}

export interface PgListenerOptions {
  name: string;
  host: string;
  port: number;
  upstream: UpstreamTarget;
  /** The upstream password (the password file, re-read when it changes). */
  password(): Promise<string>;
  maxMessageBytes: number;
  /** TLS offered to clients (SSLRequest); default: none, every SSLRequest is answered 'N'. */
  clientTls?: ClientTls;
}

export interface PgProxyDeps {
  policy: PolicySource;
  classifier: SqlClassifier;
  masker: TextMasker;
  audit: AuditSink;
  log: Logger;
  auth: ClientAuthenticator;
  /** False once the audit sink broke (default: always healthy). */
  auditHealthy?: () => boolean;
  /** The approval service (the `approval` block); absent: `approve` decisions are refused. */
  approvals?: PgApprovalGate;
}

/** What a refusal needs to know about a connection still in startup. */
interface HandshakeState {
  /** The socket to answer on: the TLS socket once TLS was negotiated. */
  client: net.Socket;
  tls?: boolean;
  identity?: Identity;
}

const NO_TLS: ClientTls = { mode: 'disable' };

interface Live {
  session?: Session;
  client: net.Socket;
  serverPid: number;
  serverSecret: number;
}

export class PgListener {
  private server?: net.Server;
  private readonly live = new Map<string, Live>();
  private readonly sockets = new Set<net.Socket>();
  private readonly metrics: BoundMetrics;
  private draining = false;
  private starredCache?: { key: string; at: number; set: ReadonlySet<string> };

  constructor(
    readonly options: PgListenerOptions,
    private readonly deps: PgProxyDeps,
  ) {
    this.metrics = boundMetrics(options.name);
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? this.options.port;
  }

  get activeSessions(): number {
    return this.live.size;
  }

  listen(): Promise<void> {
    const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (sock) => this.accept(sock));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`postgres connection "${this.options.name}": cannot listen on ${this.options.host}:${this.options.port}: ${err.message}`)));
      server.listen(this.options.port, this.options.host, () => resolve());
    });
  }

  /** Stops accepting; open sessions finish the statement in flight, then close. Resolves when all are gone or at the deadline. */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    this.server?.close();
    for (const l of this.live.values()) l.session?.drain();
    const deadline = Date.now() + timeoutMs;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    await this.drain(0);
  }

  private accept(client: net.Socket): void {
    if (this.draining) {
      client.destroy();
      return;
    }
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    client.setNoDelay(true);
    client.on('error', () => {});
    const state: HandshakeState = { client };
    this.handshake(state).catch((err: Error) => {
      if (err instanceof ClientLeft) {
        state.client.destroy();
        return;
      }
      const r = err instanceof StartupRefused ? err : new StartupRefused(err.message, 'protocol', '08P01');
      this.refuse(state, r);
    });
  }

  private async handshake(state: HandshakeState): Promise<void> {
    const name = this.options.name;
    // A trusted loopback client is the pod from its first byte: refusals name it.
    if (this.deps.auth.mode === 'trust') state.identity = this.deps.auth.trusted();
    const startup = await readStartup(state.client, this.options.clientTls ?? NO_TLS, (ts) => {
      state.client = ts;
      state.tls = true;
      this.sockets.add(ts);
      ts.once('close', () => this.sockets.delete(ts));
    });
    if (startup.kind === 'cancel') {
      state.client.destroy();
      await this.cancel(startup.pid, startup.secret);
      return;
    }
    const client = startup.socket;
    const settings = readStartupSettings(startup.params);
    if (startup.minorVersion > 0 || settings.unrecognizedOptions.length) client.write(negotiateProtocolVersion(settings.unrecognizedOptions));

    let identity: Identity;
    let rest = startup.rest;
    if (this.deps.auth.mode === 'token') {
      const got = await readPassword(client, rest).catch((err: Error) => {
        throw new StartupRefused(err.message, 'protocol', '08P01');
      });
      rest = got.rest;
      const who = await this.deps.auth.verify(got.password).catch(() => undefined);
      if (!who) {
        throw new StartupRefused(
          `connection "${name}": authentication failed: the password must be this pod's agent token or a valid OIDC token`,
          'authentication',
          '28P01',
        );
      }
      identity = who;
    } else {
      identity = this.deps.auth.trusted();
    }
    state.identity = identity;

    // Session settings are decided as the SET statement each amounts to, for this identity,
    // and recorded like the statements they stand for.
    for (const d of settings.decided) {
      const verdict = decideSql(d.sql, name, identity, this.deps.classifier, this.deps.policy);
      if (!verdict.forward) {
        const why = (verdict.error?.message ?? verdict.decision.reason).replace(/^agentgate: /, '');
        throw new StartupRefused(`startup parameter ${d.name}=${d.value} is refused: ${why}`, 'policy', '42501', false, `decided as: ${d.sql}`);
      }
      this.auditStartupSetting(state, d.sql, verdict.decision);
    }

    let up;
    try {
      up = await connectUpstream(this.options.upstream, this.options.password, Object.fromEntries(settings.upstream));
    } catch (err) {
      const e = err instanceof UpstreamError ? err : new UpstreamError((err as Error).message, '08006', 'connect');
      this.metrics.connectError(e.reason);
      this.deps.log.warn({ connection: name, reason: e.reason, err: e.message }, 'upstream connection failed');
      const auth = e.reason === 'auth';
      // A startup setting with a value the server refuses: the server's own word and code.
      if (e.reason === 'server' && /^(22|42)/.test(e.sqlstate)) {
        throw new StartupRefused(`connection "${name}": the database refused a startup setting: ${e.message}`, 'setting', e.sqlstate);
      }
      throw new StartupRefused(
        auth ? `connection "${name}": the database refused the sidecar's credentials: ${e.message}` : `connection "${name}": cannot reach the database: ${e.message}`,
        'upstream',
        auth ? '08004' : e.sqlstate.startsWith('08') ? e.sqlstate : '08006',
        false,
        auth ? `upstream SQLSTATE ${e.sqlstate}` : undefined,
      );
    }
    if (client.destroyed) {
      up.socket.destroy();
      return;
    }

    let starred: ReadonlySet<string>;
    let serverRest = up.rest;
    try {
      const r = await this.starredColumns(up.socket);
      starred = r.set;
      if (r.rest.length) serverRest = Buffer.concat([serverRest, r.rest]);
    } catch (err) {
      up.socket.destroy();
      throw new StartupRefused(`connection "${name}": cannot resolve the masked columns: ${(err as Error).message}`, 'masking-setup', '08006');
    }

    // Our own key for the client; the server's stays here.
    let pid: number;
    let secret: number;
    let key: string;
    do {
      pid = crypto.randomInt(1, 0x7fffffff);
      secret = crypto.randomInt(-0x80000000, 0x7fffffff);
      key = `${pid}:${secret}`;
    } while (this.live.has(key));
    const entry: Live = { client, serverPid: up.pid, serverSecret: up.secret };
    this.live.set(key, entry);

    const hello: Buffer[] = [authenticationRequest(0)];
    // A setting's value can be anything a role or the client put there (application_name).
    for (const [k, v] of up.parameters) hello.push(parameterStatus(k, this.deps.masker.maskText(v)));
    hello.push(...up.notices);
    hello.push(backendKeyData(pid, secret), readyForQuery(up.status));
    client.write(Buffer.concat(hello));

    const session = new Session(client, up.socket, {
      connection: name,
      identity,
      sessionId: crypto.randomUUID(),
      clientAddress: client.remoteAddress ?? '',
      applicationName: startup.params.get('application_name'),
      policy: this.deps.policy,
      classifier: this.deps.classifier,
      masker: this.deps.masker,
      audit: this.deps.audit,
      metrics: this.metrics,
      log: this.deps.log,
      starred,
      maxMessageBytes: this.options.maxMessageBytes,
      auditHealthy: this.deps.auditHealthy ?? (() => true),
      cancelUpstream: () => void this.sendCancel(up.pid, up.secret),
      approvals: this.deps.approvals,
      serverParameters: up.parameters,
    });
    entry.session = session;
    this.metrics.active.inc();
    this.sockets.add(up.socket);
    up.socket.once('close', () => this.sockets.delete(up.socket));
    session.onClose = () => {
      this.live.delete(key);
      this.metrics.active.dec();
    };
    session.start(rest, serverRest);
    if (this.draining) session.drain();
  }

  private auditStartupSetting(state: HandshakeState, sql: string, decision: Decision): void {
    const now = new Date().toISOString();
    const identity = state.identity;
    try {
      this.deps.audit.append({
        auditID: crypto.randomUUID(),
        stage: 'ResponseComplete',
        verb: 'set',
        user: identity ? { username: identity.subject, groups: identity.groups } : undefined,
        pod: identity?.pod,
        sourceIPs: [state.client.remoteAddress ?? ''],
        requestReceivedTimestamp: now,
        stageTimestamp: now,
        protocol: 'postgres',
        connection: this.options.name,
        event: 'startup-setting',
        statement: this.deps.masker.maskText(sql),
        statementKinds: ['set'],
        decision: { action: decision.action, rule: decision.rule, reason: decision.reason, enforced: decision.enforced },
      });
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message }, 'audit append failed');
    }
  }

  /** Ends a connection that will not get a session: one audit event, one metric, and the FATAL PostgreSQL would send (or silence where it sends none). */
  private refuse(state: HandshakeState, r: StartupRefused): void {
    const client = state.client;
    startupRefusals.labels(this.options.name, r.reason).inc();
    this.deps.log.debug({ connection: this.options.name, reason: r.reason, err: r.message }, 'client connection refused at startup');
    const now = new Date().toISOString();
    const identity = state.identity;
    try {
      this.deps.audit.append({
        auditID: crypto.randomUUID(),
        stage: 'ResponseComplete',
        verb: 'connect',
        user: identity ? { username: identity.subject, groups: identity.groups } : undefined,
        pod: identity?.pod,
        sourceIPs: [client.remoteAddress ?? ''],
        requestReceivedTimestamp: now,
        stageTimestamp: now,
        protocol: 'postgres',
        connection: this.options.name,
        event: 'connection-refused',
        sqlstate: r.sqlstate,
        responseStatus: { reason: r.reason, message: this.deps.masker.maskText(r.message) },
        annotations: { 'agentgate.dev/client-tls': state.tls ? 'true' : 'false' },
      });
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message }, 'audit append failed');
    }
    if (r.silent || client.destroyed) {
      client.destroy();
      return;
    }
    client.end(
      r.protocol2
        ? Buffer.from(`EFATAL:  agentgate: ${r.message}\n\0`)
        : errorResponse({ severity: 'FATAL', code: r.sqlstate, message: `agentgate: ${r.message}`, detail: r.detail }),
    );
    // A client that never closes its side must not hold the socket (or a drain) open.
    setTimeout(() => client.destroy(), 1000).unref();
  }

  private async cancel(pid: number, secret: number): Promise<void> {
    const l = this.live.get(`${pid}:${secret}`);
    // Unknown keys are ignored silently, as PostgreSQL does.
    if (!l?.session) return;
    // A statement held for approval is cancelled here; the server's own work, if any, there.
    if (l.session.cancel()) await this.sendCancel(l.serverPid, l.serverSecret);
  }

  private async sendCancel(pid: number, secret: number): Promise<void> {
    try {
      const sock = await openTransport(this.options.upstream);
      sock.end(cancelRequest(pid, secret));
      sock.on('error', () => {});
      sock.resume();
    } catch (err) {
      this.deps.log.warn({ connection: this.options.name, err: (err as Error).message }, 'cancel request could not reach the server');
    }
  }

  /**
   * `spec.masking.columns` as `tableOid:attnum`, with the database's user types (so rows
   * and COPY of composites, domains and enums can be masked), cached for a few seconds per listener.
   */
  private async starredColumns(sock: net.Socket): Promise<{ set: ReadonlySet<string>; rest: Buffer }> {
    const columns = this.deps.policy.current().masking?.columns ?? [];
    const fields = this.deps.policy.current().masking?.fields ?? [];
    const key = columns.join('\n') + '\0' + fields.join('\n');
    const c = this.starredCache;
    if (c && c.key === key && Date.now() - c.at < 10_000) return { set: c.set, rest: Buffer.alloc(0) };
    const list = columns.map((s) => `'${s.replace(/'/g, "''")}'`).join(',');
    const starredSql =
      'select a.attrelid::int8, a.attnum from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid ' +
      'join pg_catalog.pg_namespace n on n.oid = c.relnamespace ' +
      `where not a.attisdropped and a.attnum > 0 and n.nspname || '.' || c.relname || '.' || a.attname = any (array[${list}]::text[])`;
    // One round trip: the starred columns' rows have two values, the types' USER_TYPES_WIDTH.
    const { rows, rest } = await runSetupQuery(sock, (columns.length ? starredSql + '; ' : '') + USER_TYPES_SQL, this.options.upstream.connectTimeoutMs);
    const keys = new Set(rows.filter((r) => r.length === 2).map((r) => `${r[0]}:${r[1]}`));
    const cat = catalogFromRows(rows.filter((r) => r.length === USER_TYPES_WIDTH), keys);
    const set = new MaskingCatalog(keys, new TypeCatalog(cat.types, cat.relations), columnNames(columns), fields);
    this.starredCache = { key, at: Date.now(), set };
    return { set, rest };
  }
}

