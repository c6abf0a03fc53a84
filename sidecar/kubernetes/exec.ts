// Upgrade requests: exec and attach over WebSocket (the Kubernetes channel
// protocols v5.channel.k8s.io and v4.channel.k8s.io, kubectl ≥ 1.31's default),
// decided like any request, then relayed frame by frame: stdout/stderr masked by a
// streaming masker per channel, the status channel masked as JSON, and the whole
// session recorded. SPDY/3.1 (kubectl ≤ 1.30) is relayed the same way by spdy-relay.ts.
// Streams we cannot parse are refused, never relayed blind: other SPDY versions, the
// unframed WebSocket channel protocols, port-forward.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { maskValue } from '../../core/mask/value.js';
import { createTextMasker } from '../../core/mask/text.js';
import type { TextMasker } from '../../core/mask/text.js';
import { optionsFromSpec } from '../../core/mask/options.js';
import { compose } from './exchange.js';
import type { Decided, Exchange, Stage } from './exchange.js';
import { ADMISSION, approvalHold } from './stages.js';
import { buildEvent } from './audit-event.js';
import type { AuditContext } from './audit-event.js';
import type { ForwardDeps } from './forward.js';
import { codeClass, execSessionsOpen, execSessionsTotal, requestsTotal } from './metrics.js';
import { SessionRecorder } from './session-recorder.js';
import { relaySpdy, spdyHandshake } from './spdy-relay.js';
import { status } from './status.js';
import type { StatusObject } from './status.js';

export const SUPPORTED_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
export const SPDY_REFUSAL =
  'agentgate: only SPDY/3.1 is relayed (frame by frame, masked and recorded); use kubectl 1.31 or newer, which uses WebSocket (v5.channel.k8s.io)';

const STDIN = 0, STDOUT = 1, STDERR = 2, ERROR = 3, RESIZE = 4, CLOSE = 255;

export interface UpgradeDeps extends ForwardDeps {
  sessionDir: string;
}

const CHOSEN = Symbol('agentgate.subprotocol');
type Tagged = IncomingMessage & { [CHOSEN]?: string };
// The agent gets the subprotocol the API server chose, so both ends frame alike.
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
  handleProtocols: (_offered, request) => (request as Tagged)[CHOSEN] ?? false,
});

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable' };

function writeRaw(socket: Socket, code: number, body: string, auditID: string): void {
  if (socket.destroyed) return;
  socket.end(
    `HTTP/1.1 ${code} ${REASONS[code] ?? 'Error'}\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nAudit-Id: ${auditID}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

interface UpgradeExchange extends Exchange {
  readonly socket: Socket;
  readonly head: Buffer;
  readonly deps: UpgradeDeps;
  /** The exec-sessions metric outcome of a refusal, when not the default. */
  outcome?: string;
  /** The stream protocol, once known to be one we relay. */
  spdy?: boolean;
  /** The WebSocket subprotocols offered that we speak. */
  protocols?: string[];
}

function upgradeExchange(req: IncomingMessage, socket: Socket, head: Buffer, deps: UpgradeDeps): UpgradeExchange {
  const ctx: AuditContext = { auditID: randomUUID(), received: new Date(), req, cluster: deps.cluster, level: deps.level };
  const x: UpgradeExchange = {
    req, socket, head, ctx, deps,
    labels: { verb: (req.method ?? '').toLowerCase(), group: 'non-resource', decision: 'deny' },
    refuse(s, extra = {}) {
      writeRaw(socket, s.code, JSON.stringify(s), ctx.auditID);
      requestsTotal.inc({ verb: x.labels.verb, group: x.labels.group, decision: x.labels.decision, code: codeClass(s.code) });
      execSessionsTotal.inc({ outcome: x.outcome ?? (x.policy === undefined || ctx.approval ? 'denied' : 'refused') });
      audit(x, 'ResponseComplete', s.code, { ...extra, message: s.message });
    },
    abandon(message, extra = {}) {
      requestsTotal.inc({ verb: x.labels.verb, group: x.labels.group, decision: x.labels.decision, code: 'other' });
      execSessionsTotal.inc({ outcome: 'cancelled' });
      audit(x, 'ResponseComplete', 499, { ...extra, message });
    },
    onGone(cb) {
      if (socket.destroyed) {
        cb();
        return () => undefined;
      }
      socket.once('close', cb);
      return () => socket.off('close', cb);
    },
  };
  return x;
}

function audit(x: UpgradeExchange, stage: 'ResponseStarted' | 'ResponseComplete', code: number, extra: Parameters<typeof buildEvent>[3] = {}): void {
  try {
    x.deps.audit.append(buildEvent(x.ctx, stage, code, extra));
  } catch (err) {
    x.deps.log.error({ err: (err as Error).message }, 'audit append failed');
  }
}

/**
 * Only sessions we can relay, masked and recorded, go further (and only those are held for
 * approval: nobody approves a refusal): pods/exec and pods/attach, over SPDY/3.1 or the
 * framed WebSocket channel protocols.
 */
const relayable: Stage<UpgradeExchange> = (next) => (x0) => {
  const x = x0 as Decided<UpgradeExchange>;
  const r = x.request;
  x.outcome = 'refused';
  const done = (s: StatusObject) => {
    x.refuse(s);
    return Promise.resolve();
  };
  const upgrade = String(x.req.headers.upgrade ?? '').toLowerCase();
  const streaming = !r.nonResource && r.resource === 'pods' && r.apiGroup === '' && ['exec', 'attach', 'portforward'].includes(r.subresource);
  if (!streaming) return done(status(400, 'BadRequest', `agentgate: connection upgrades are only proxied for pods/exec and pods/attach, not for ${x.target.path}`, r));
  if (r.subresource === 'portforward') {
    return done(status(400, 'BadRequest', 'agentgate: port-forward is refused: its byte streams carry arbitrary protocols that agentgate cannot mask or record', r));
  }
  if (upgrade.startsWith('spdy/')) {
    if (upgrade !== 'spdy/3.1') return done(status(400, 'BadRequest', SPDY_REFUSAL, r));
    x.spdy = true;
  } else if (upgrade !== 'websocket') return done(status(400, 'BadRequest', `agentgate: unsupported upgrade '${upgrade}'`, r));
  else {
    const offered = String(x.req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    x.protocols = offered.filter((p) => SUPPORTED_PROTOCOLS.includes(p));
    if (x.protocols.length === 0) {
      return done(status(400, 'BadRequest', `agentgate: exec needs WebSocket subprotocol ${SUPPORTED_PROTOCOLS.join(' or ')} (offered: ${offered.join(', ') || 'none'}); use kubectl 1.31 or newer`, r));
    }
  }
  x.outcome = undefined;
  return next(x0);
};

const UPGRADE = compose<UpgradeExchange>([...ADMISSION, relayable, approvalHold], (x) => session(x as Decided<UpgradeExchange>));

export function handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer, deps: UpgradeDeps): Promise<void> {
  socket.on('error', () => undefined);
  return UPGRADE(upgradeExchange(req, socket, head, deps));
}

/** The session itself: SPDY relayed frame by frame, or the WebSocket channels. */
async function session(x: Decided<UpgradeExchange>): Promise<void> {
  const { req, socket, head, deps, ctx, request: r } = x;
  const refuse = (s: StatusObject, outcome: string) => {
    x.outcome = outcome;
    x.refuse(s);
  };
  if (x.spdy) {
    return spdySession(x, { audit: (stage, code, extra) => audit(x, stage, code, extra), refuse });
  }
  const protocols = x.protocols!;
  const upstream = deps.upstream();
  const up = new WebSocket(`${upstream.url.origin.replace(/^http/, 'ws')}${x.target.target}`, protocols, {
    headers: x.headers as Record<string, string>,
    ca: upstream.caPem || undefined,
    perMessageDeflate: false,
    handshakeTimeout: 10_000,
    maxPayload: 16 * 1024 * 1024,
  });

  const opened = await new Promise<{ ok: true } | { ok: false; code: number; body: string }>((resolve) => {
    up.once('open', () => resolve({ ok: true }));
    up.once('unexpected-response', (_rq, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ ok: false, code: res.statusCode ?? 502, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve({ ok: false, code: 502, body: '' }));
    });
    up.once('error', (err) => resolve({ ok: false, code: 503, body: JSON.stringify(status(503, 'ServiceUnavailable', `agentgate: the Kubernetes API server (${upstream.url.origin}) is unavailable: ${err.message}`)) }));
  });
  if (!opened.ok) {
    let s: StatusObject;
    try {
      s = maskValue(JSON.parse(opened.body) as StatusObject);
    } catch {
      s = status(opened.code, opened.code === 503 ? 'ServiceUnavailable' : 'InternalError', `agentgate: the API server refused the upgrade with HTTP ${opened.code}`);
    }
    return refuse(s, 'upstream-refused');
  }

  const opts = optionsFromSpec(x.policy.masking);
  const session = ctx.auditID;
  ctx.session = session;
  const command = (x.target.query.get('command') ?? []).join(' ');
  let recorder: SessionRecorder | undefined;
  try {
    recorder = new SessionRecorder(deps.sessionDir, session, { command, title: `${r.subresource} ${r.namespace}/${r.name}` }, opts);
    ctx.sessionFile = recorder.file;
  } catch (err) {
    up.terminate();
    return refuse(status(503, 'ServiceUnavailable', `agentgate: the session cannot be recorded (${(err as Error).message}), so it is not opened`, r), 'refused');
  }

  (req as Tagged)[CHOSEN] = up.protocol;
  const client = await new Promise<WebSocket>((resolve) => wss.handleUpgrade(req, socket, head, (ws) => resolve(ws)));
  execSessionsOpen.inc();
  execSessionsTotal.inc({ outcome: 'allowed' });
  audit(x, 'ResponseStarted', 101);

  const maskers = new Map<number, TextMasker>([
    [STDOUT, createTextMasker(opts)],
    [STDERR, createTextMasker(opts)],
  ]);
  let bytesIn = 0;
  let bytesOut = 0;
  let exitStatus = '';

  const sendToClient = (channel: number, payload: Uint8Array) => {
    if (payload.length === 0 || client.readyState !== WebSocket.OPEN) return;
    const frame = Buffer.allocUnsafe(payload.length + 1);
    frame[0] = channel;
    frame.set(payload, 1);
    bytesOut += frame.length;
    client.send(frame);
  };

  let done = false;
  up.on('message', (data: RawData) => {
    // After either side closed, the session is over: nothing more is relayed or recorded.
    if (done) return;
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
    if (buf.length === 0) return;
    bytesIn += buf.length;
    const channel = buf[0]!;
    const payload = buf.subarray(1);
    const m = maskers.get(channel);
    if (m) {
      const out = m.write(payload);
      recorder?.output(out);
      sendToClient(channel, out);
    } else if (channel === ERROR) {
      let out: Buffer;
      try {
        const parsed = maskValue(JSON.parse(payload.toString('utf8')) as { status?: string; message?: string });
        exitStatus = parsed.status === 'Success' ? 'exit 0' : (parsed.message ?? 'failure');
        out = Buffer.from(JSON.stringify(parsed));
      } catch {
        out = Buffer.from(JSON.stringify(status(500, 'InternalError', 'agentgate: unparseable status from the API server')));
      }
      recorder?.marker(exitStatus);
      sendToClient(ERROR, out);
    } else {
      // Unknown server channel: nothing we can vouch for, so nothing is relayed.
      deps.log.warn({ session, channel }, 'exec: dropped frame on unknown channel');
    }
  });

  client.on('message', (data: RawData) => {
    if (done) return;
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
    if (buf.length === 0) return;
    const channel = buf[0]!;
    if (channel === STDIN) recorder?.input(buf.subarray(1));
    else if (channel === RESIZE) {
      try {
        const size = JSON.parse(buf.subarray(1).toString('utf8')) as { Width?: number; Height?: number };
        recorder?.resize(size.Width ?? 0, size.Height ?? 0);
      } catch {
        return; // a malformed resize is dropped, the session goes on
      }
    } else if (channel !== CLOSE) {
      deps.log.warn({ session, channel }, 'exec: dropped client frame on unknown channel');
      return;
    }
    if (up.readyState === WebSocket.OPEN) up.send(buf);
  });

  const finish = async (why: string) => {
    if (done) return;
    done = true;
    for (const [channel, m] of maskers) {
      const tail = m.end();
      recorder?.output(tail);
      sendToClient(channel, tail);
    }
    execSessionsOpen.dec();
    requestsTotal.inc({ verb: x.labels.verb, group: x.labels.group, decision: x.labels.decision, code: '1xx' });
    await recorder?.close();
    audit(x, 'ResponseComplete', 101, { bytesIn, bytesOut, message: why });
  };
  up.on('close', (code, reason) => {
    void finish('upstream closed').then(() => {
      if (client.readyState === WebSocket.OPEN) client.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    });
  });
  client.on('close', () => {
    if (up.readyState === WebSocket.OPEN || up.readyState === WebSocket.CONNECTING) up.close();
    void finish('client closed');
  });
  up.on('error', (err) => {
    deps.log.warn({ session, err: err.message }, 'exec: upstream stream error');
    client.terminate();
  });
  client.on('error', () => up.terminate());
}

interface SpdyHooks {
  audit: (stage: 'ResponseStarted' | 'ResponseComplete', code: number, extra?: Parameters<typeof buildEvent>[3]) => void;
  refuse: (s: StatusObject, outcome: string) => void;
}

async function spdySession(x: Decided<UpgradeExchange>, hooks: SpdyHooks): Promise<void> {
  const { req, socket, head, deps, ctx, request: r } = x;
  // Nothing the agent sends may be lost while the upstream connection is set up.
  socket.pause();
  const hs = await spdyHandshake(req.method ?? 'GET', x.target.target, deps.upstream(), x.headers);
  if (!hs.ok) return hooks.refuse(hs.status, 'upstream-refused');
  hs.upstream.pause();
  const opts = optionsFromSpec(x.policy.masking);
  ctx.session = ctx.auditID;
  const command = (x.target.query.get('command') ?? []).join(' ');
  let recorder: SessionRecorder;
  try {
    recorder = new SessionRecorder(deps.sessionDir, ctx.auditID, { command, title: `${r.subresource} ${r.namespace}/${r.name}` }, opts);
    ctx.sessionFile = recorder.file;
  } catch (err) {
    hs.upstream.destroy();
    return hooks.refuse(status(503, 'ServiceUnavailable', `agentgate: the session cannot be recorded (${(err as Error).message}), so it is not opened`, r), 'refused');
  }
  // The API server's 101 goes to the agent as sent, with our audit ID beside it.
  socket.write(Buffer.concat([hs.head.subarray(0, hs.head.length - 2), Buffer.from(`Audit-Id: ${ctx.auditID}\r\n\r\n`)]));
  execSessionsOpen.inc();
  execSessionsTotal.inc({ outcome: 'allowed' });
  hooks.audit('ResponseStarted', 101);
  const s = relaySpdy(socket, head, hs.upstream, hs.rest, opts, recorder);
  socket.resume();
  hs.upstream.resume();
  const why = await s.closed;
  execSessionsOpen.dec();
  requestsTotal.inc({ verb: x.labels.verb, group: x.labels.group, decision: x.labels.decision, code: '1xx' });
  await recorder.close();
  hooks.audit('ResponseComplete', 101, { bytesIn: s.bytesIn, bytesOut: s.bytesOut, message: why });
}
