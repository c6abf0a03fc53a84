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
import { admit } from './admit.js';
import { buildEvent } from './audit-event.js';
import type { AuditContext } from './audit-event.js';
import type { ForwardDeps } from './forward.js';
import { codeClass, execSessionsOpen, execSessionsTotal, groupLabel, requestsTotal } from './metrics.js';
import { SessionRecorder } from './session-recorder.js';
import { relaySpdy, spdyHandshake } from './spdy-relay.js';
import { status } from './status.js';
import { JUSTIFICATION_HEADER } from './approval-gate.js';
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

export async function handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer, deps: UpgradeDeps): Promise<void> {
  const ctx: AuditContext = { auditID: randomUUID(), received: new Date(), req, cluster: deps.cluster, level: deps.level };
  socket.on('error', () => undefined);
  let verb = (req.method ?? '').toLowerCase();
  let group = 'non-resource';
  let decisionLabel = 'deny';
  const audit = (stage: 'ResponseStarted' | 'ResponseComplete', code: number, extra: Parameters<typeof buildEvent>[3] = {}) => {
    try {
      deps.audit.append(buildEvent(ctx, stage, code, extra));
    } catch (err) {
      deps.log.error({ err: (err as Error).message }, 'audit append failed');
    }
  };
  const refuse = (s: StatusObject, outcome: string) => {
    writeRaw(socket, s.code, JSON.stringify(s), ctx.auditID);
    requestsTotal.inc({ verb, group, decision: decisionLabel, code: codeClass(s.code) });
    execSessionsTotal.inc({ outcome });
    audit('ResponseComplete', s.code, { message: s.message });
  };

  const a = await admit(req, deps);
  ctx.identity = a.identity;
  ctx.request = a.request;
  ctx.decision = a.decision;
  if (a.request) {
    verb = a.request.verb;
    group = groupLabel(a.request.apiGroup, a.request.nonResource);
  }
  if (a.decision) decisionLabel = a.decision.action;
  const held = !a.ok && a.approvable && deps.approvals ? a.approvable : undefined;
  if (!a.ok && !held) return refuse(a.status, 'denied');
  const adm = a.ok ? a : held!;
  decisionLabel = a.ok ? 'allow' : 'approve';
  const r = adm.request;
  // Asked only once the session is known to be one we can relay: nobody approves a refusal.
  const approved = async (): Promise<boolean> => {
    if (!held) return true;
    const abort = new AbortController();
    const gone = () => abort.abort();
    socket.once('close', gone);
    const outcome = await deps.approvals!.hold({ identity: held.identity, request: r, decision: held.decision, method: req.method ?? 'GET', url: req.url ?? '/', signal: abort.signal,
      ...(typeof req.headers[JUSTIFICATION_HEADER] === 'string' ? { justification: req.headers[JUSTIFICATION_HEADER] } : {}) });
    socket.off('close', gone);
    if (outcome.approval) ctx.approval = outcome.approval;
    if (outcome.forward) return true;
    if (abort.signal.aborted) {
      requestsTotal.inc({ verb, group, decision: decisionLabel, code: 'other' });
      execSessionsTotal.inc({ outcome: 'cancelled' });
      audit('ResponseComplete', 499, { message: outcome.reason });
    } else refuse(outcome.status!, 'denied');
    return false;
  };
  if (deps.noUpstream) {
    decisionLabel = 'deny';
    return refuse(status(403, 'Forbidden', `agentgate: ${deps.noUpstream}`, r), 'refused');
  }
  if (deps.auditBroken?.()) {
    decisionLabel = 'deny';
    return refuse(status(503, 'ServiceUnavailable', `agentgate: the audit trail is unavailable (${deps.auditBroken()}); sessions are refused until it can record them again`, r), 'refused');
  }

  const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
  const streaming = !r.nonResource && r.resource === 'pods' && r.apiGroup === '' && ['exec', 'attach', 'portforward'].includes(r.subresource);
  if (!streaming) return refuse(status(400, 'BadRequest', `agentgate: connection upgrades are only proxied for pods/exec and pods/attach, not for ${req.url ?? ''}`, r), 'refused');
  if (r.subresource === 'portforward') {
    return refuse(status(400, 'BadRequest', 'agentgate: port-forward is refused: its byte streams carry arbitrary protocols that agentgate cannot mask or record', r), 'refused');
  }
  if (upgrade.startsWith('spdy/')) {
    if (upgrade !== 'spdy/3.1') return refuse(status(400, 'BadRequest', SPDY_REFUSAL, r), 'refused');
    if (!(await approved())) return;
    return spdySession(req, socket, head, deps, ctx, adm.headers, adm.policy.masking, r, { audit, refuse, labels: () => ({ verb, group, decisionLabel }) });
  }
  if (upgrade !== 'websocket') return refuse(status(400, 'BadRequest', `agentgate: unsupported upgrade '${upgrade}'`, r), 'refused');

  const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const protocols = offered.filter((p) => SUPPORTED_PROTOCOLS.includes(p));
  if (protocols.length === 0) {
    return refuse(
      status(400, 'BadRequest', `agentgate: exec needs WebSocket subprotocol ${SUPPORTED_PROTOCOLS.join(' or ')} (offered: ${offered.join(', ') || 'none'}); use kubectl 1.31 or newer`, r),
      'refused',
    );
  }

  if (!(await approved())) return;
  const upstream = deps.upstream();
  const target = new URL(req.url ?? '/', upstream.url.origin.replace(/^http/, 'ws'));
  const up = new WebSocket(target, protocols, {
    headers: adm.headers as Record<string, string>,
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

  const opts = optionsFromSpec(adm.policy.masking);
  const session = ctx.auditID;
  ctx.session = session;
  const command = new URL(req.url ?? '/', 'https://x').searchParams.getAll('command').join(' ');
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
  audit('ResponseStarted', 101);

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
    requestsTotal.inc({ verb, group, decision: decisionLabel, code: '1xx' });
    await recorder?.close();
    audit('ResponseComplete', 101, { bytesIn, bytesOut, message: why });
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
  labels: () => { verb: string; group: string; decisionLabel: string };
}

async function spdySession(
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  deps: UpgradeDeps,
  ctx: AuditContext,
  headers: Record<string, string | string[]>,
  masking: Parameters<typeof optionsFromSpec>[0],
  r: NonNullable<AuditContext['request']>,
  hooks: SpdyHooks,
): Promise<void> {
  // Nothing the agent sends may be lost while the upstream connection is set up.
  socket.pause();
  const hs = await spdyHandshake(req, deps.upstream(), headers);
  if (!hs.ok) return hooks.refuse(hs.status, 'upstream-refused');
  hs.upstream.pause();
  const opts = optionsFromSpec(masking);
  ctx.session = ctx.auditID;
  const command = new URL(req.url ?? '/', 'https://x').searchParams.getAll('command').join(' ');
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
  const { verb, group, decisionLabel } = hooks.labels();
  requestsTotal.inc({ verb, group, decision: decisionLabel, code: '1xx' });
  await recorder.close();
  hooks.audit('ResponseComplete', 101, { bytesIn: s.bytesIn, bytesOut: s.bytesOut, message: why });
}
