// One plain (non-upgrade) request: the shared admission stages (stages.ts), then the
// body, an approval hold, and the relay: forward with the real credential → mask the
// response as it streams → audit. Watches and log follows stream for as long as both ends
// stay; a client that goes away aborts the upstream request.

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../core/log.js';
import type { AuditSink } from '../../core/audit/types.js';
import type { StreamMasker } from '../../core/mask/text.js';
import type { Authenticator } from './authenticate.js';
import type { Policy } from '../../core/policy/types.js';
import { buildEvent } from './audit-event.js';
import type { AuditContext } from './audit-event.js';
import { compose } from './exchange.js';
import type { AuditExtra, Decided, Exchange, Stage } from './exchange.js';
import { ADMISSION, approvalHold } from './stages.js';
import { isApiDocument } from './request-headers.js';
import { codeClass, openWatches, refusedBodies, requestDuration, requestsTotal } from './metrics.js';
import { maskOptionsFor, planBody } from './response-body.js';
import { auditableBody } from './audit-body.js';
import { responseHeaders } from './response-headers.js';
import type { BodyPlan } from './response-body.js';
import { sendStatus, status } from './status.js';
import type { StatusObject } from './status.js';
import type { Upstream } from './upstream.js';
import type { KubeApprovalGate } from './approval-gate.js';

/** The API server's own limit on a request body is 3 MiB; we hold bodies to audit them. */
export const MAX_REQUEST_BODY = 3 * 1024 * 1024;
const RESPONSE_OBJECT_LIMIT = 1024 * 1024;
const BUFFER_LIMIT = 64 * 1024;

export interface ForwardDeps {
  auth: Authenticator;
  policy: () => Policy;
  upstreamAuthorization: () => string;
  impersonate: boolean;
  upstream: () => Upstream;
  audit: AuditSink;
  log: Logger;
  cluster: string;
  level: 'Metadata' | 'Request' | 'RequestResponse';
  /** Why the audit trail cannot record, when it cannot (then requests are refused). */
  auditBroken?: () => string | undefined;
  /** Set when there is no API server credential: every allowed request is refused with this. */
  noUpstream?: string | undefined;
  /** The approval service; without it `approve` decisions are refused (fail closed). */
  approvals?: KubeApprovalGate | undefined;
}

/** An abort signal for undici (EventEmitter form): `aborted`, `reason` and an `abort` event. */
class UpstreamAbort extends EventEmitter {
  aborted = false;
  reason: Error | undefined;
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new Error('client closed the request');
    this.emit('abort');
  }
}

const STOP = Symbol('stop');

/**
 * Feeds `body`'s chunks to `onChunk` with plain stream events (an async iterator per
 * response costs more than the rest of a small GET's read). A returned promise pauses the
 * body until it settles; STOP ends reading. Rejects on a stream error or a premature close.
 */
function eachChunk(body: Readable, onChunk: (chunk: Buffer) => Promise<void> | undefined | typeof STOP): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const settle = (err?: Error) => {
      if (done) return;
      done = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', settle);
      body.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onEnd = () => settle();
    const onClose = () => settle(new Error('the API server closed the response before its end'));
    const onData = (chunk: Buffer) => {
      let r: Promise<void> | undefined | typeof STOP;
      try {
        r = onChunk(chunk);
      } catch (err) {
        settle(err as Error);
        return;
      }
      if (r === STOP) settle();
      else if (r) {
        body.pause();
        r.then(() => {
          if (!done) body.resume();
        }, settle);
      }
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', settle);
    body.once('close', onClose);
  });
}

/** Resolves when `res` can take more (drain) or is gone (close), leaving no listener behind. */
function writable(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

// A watch, or a log follow (`follow` decoded as the server decodes a bool).
function isStreaming(x: Decided): boolean {
  if (x.request.verb === 'watch') return true;
  if (x.request.subresource !== 'log') return false;
  const f = x.target.query.get('follow')?.[0];
  return f !== undefined && f !== '0' && f.toLowerCase() !== 'false';
}

async function readAll(req: IncomingMessage): Promise<Buffer | StatusObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_REQUEST_BODY) return status(413, 'BadRequest', `agentgate: request body larger than ${MAX_REQUEST_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

interface PlainExchange extends Exchange {
  readonly res: ServerResponse;
  readonly t0: bigint;
  clientGone: boolean;
  readonly upstreamAbort: UpstreamAbort;
}

function plainExchange(req: IncomingMessage, res: ServerResponse, deps: ForwardDeps): PlainExchange {
  const ctx: AuditContext = { auditID: randomUUID(), received: new Date(), req, cluster: deps.cluster, level: deps.level };
  const x: PlainExchange = {
    req, res, ctx, deps,
    t0: process.hrtime.bigint(),
    labels: { verb: (req.method ?? '').toLowerCase(), group: 'non-resource', decision: 'deny' },
    clientGone: false,
    // undici takes an EventEmitter as its abort signal: far cheaper per request than an
    // AbortController, whose EventTarget costs more than the rest of the request setup.
    upstreamAbort: new UpstreamAbort(),
    refuse(s, extra = {}, headers = {}) {
      // Audit-Id goes into each writeHead rather than setHeader: writeHead with no headers
      // set before takes Node's fast path (no per-header merge).
      if (req.readableEnded === false && x.body === undefined) req.resume();
      sendStatus(res, s, { 'audit-id': ctx.auditID, ...headers });
      finish(x, s.code, { ...extra, message: s.message });
    },
    abandon(message, extra = {}) {
      finish(x, 499, { ...extra, message });
    },
    onGone(cb) {
      if (x.clientGone) {
        cb();
        return () => undefined;
      }
      const h = () => {
        if (!res.writableFinished) cb();
      };
      res.on('close', h);
      return () => res.off('close', h);
    },
  };
  res.on('close', () => {
    if (!res.writableFinished) {
      x.clientGone = true;
      x.upstreamAbort.abort();
    }
  });
  return x;
}

function finish(x: PlainExchange, code: number, extra: AuditExtra = {}, timed = true): void {
  const { labels } = x;
  requestsTotal.inc({ verb: labels.verb, group: labels.group, decision: labels.decision, code: codeClass(code) });
  if (timed) requestDuration.observe({ verb: labels.verb }, Number(process.hrtime.bigint() - x.t0) / 1e9);
  try {
    x.deps.audit.append(buildEvent(x.ctx, 'ResponseComplete', code, extra));
  } catch (err) {
    x.deps.log.error({ err: (err as Error).message, auditID: x.ctx.auditID }, 'audit append failed');
  }
}

/** A plain request's body, read whole (bodies are held to be audited and shown to approvers). */
const readBody: Stage<PlainExchange> = (next) => async (x0) => {
  const x = x0 as Decided<PlainExchange>;
  const m = x.req.method;
  if (m !== 'GET' && m !== 'HEAD' && m !== 'OPTIONS') {
    const b = await readAll(x.req);
    if (!Buffer.isBuffer(b)) return x.refuse(b);
    x.body = b;
    x.requestObject = auditableBody(b, x.req.headers['content-type'], maskOptionsFor(x.policy.masking), x.request);
  }
  return next(x);
};

// API documents pass as sent (request-headers.ts says which): there is nothing to mask.
const PASS_THROUGH: StreamMasker = { write: (chunk) => Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), end: () => EMPTY } as StreamMasker;
const EMPTY = Buffer.alloc(0);

const PLAIN = compose<PlainExchange>([...ADMISSION, readBody, approvalHold], (x) => relay(x as Decided<PlainExchange>));

export function forward(req: IncomingMessage, res: ServerResponse, deps: ForwardDeps): Promise<void> {
  return PLAIN(plainExchange(req, res, deps));
}

/** Forwards the canonical request upstream and relays the masked response. */
async function relay(x: Decided<PlainExchange>): Promise<void> {
  const { req, res, ctx, deps, request } = x;
  const body = x.body;
  const requestObject = x.requestObject;
  const abort = x.upstreamAbort;
  const refuse = x.refuse;
  const streaming = isStreaming(x);
  const upstream = deps.upstream();
  const method = req.method ?? 'GET';

  const send = () =>
    upstream.dispatcher.request({
      path: x.target.target,
      method: method as 'GET',
      headers: x.headers,
      body: body && body.length ? body : null,
      signal: abort,
    });
  let up;
  try {
    up = await send();
    if (up.statusCode === 401) {
      // The pod's token may have rotated since we last read it: re-read once and retry.
      if (await upstream.recheck()) {
        up.body.resume();
        x.headers.authorization = upstream.authorization;
        up = await send();
      }
    }
  } catch (err) {
    if (x.clientGone) return finish(x, 499, { message: 'client closed the request', requestObject });
    const msg = (err as Error).message;
    deps.log.warn({ err: msg, upstream: upstream.url.origin }, 'upstream unreachable');
    const s = status(503, 'ServiceUnavailable', `agentgate: the Kubernetes API server (${upstream.url.origin}) is unavailable: ${msg}`);
    sendStatus(res, s, { 'audit-id': ctx.auditID, 'retry-after': '1' });
    return finish(x, 503, { message: s.message, requestObject });
  }
  // Destroying the body (refusal, client gone) emits an abort error nobody else awaits.
  up.body.on('error', () => undefined);
  ctx.upstreamAuditId = typeof up.headers['audit-id'] === 'string' ? up.headers['audit-id'] : undefined;

  const contentType = up.headers['content-type'] as string | undefined;
  const empty = method === 'HEAD' || up.statusCode === 204 || up.statusCode === 304 || up.headers['content-length'] === '0';
  const plan: BodyPlan | undefined = empty
    ? undefined
    : isApiDocument(request, method) && up.statusCode < 300
      ? { kind: 'masked', masker: PASS_THROUGH }
      : planBody(request, contentType, x.policy.masking.secrets, maskOptionsFor(x.policy.masking));
  if (plan?.kind === 'refuse') {
    up.body.destroy();
    refusedBodies.inc({ why: 'content-type' });
    deps.log.warn({ auditID: ctx.auditID, why: plan.why }, 'upstream response refused');
    return refuse(status(502, 'InternalError', `agentgate: ${plan.why}; responses are only passed on masked, so this one was refused`));
  }

  const headers = responseHeaders(up.headers, ctx.auditID, maskOptionsFor(x.policy.masking));
  if (empty) {
    if (up.headers['content-length'] !== undefined) headers['content-length'] = String(up.headers['content-length']);
    res.writeHead(up.statusCode, headers);
    res.end();
    up.body.resume();
    return finish(x, up.statusCode, { requestObject });
  }

  const masker = (plan as { masker: StreamMasker }).masker;
  if (streaming) {
    res.writeHead(up.statusCode, headers);
    // Now, not with the first event: a watch that sees no change for minutes still has its
    // answer (kubectl --request-timeout, rollout status and informers wait for it).
    res.flushHeaders();
    openWatches.inc();
    try {
      deps.audit.append(buildEvent(ctx, 'ResponseStarted', up.statusCode));
    } catch {
      // The gate now refuses new requests; this stream was already started.
    }
  }
  // Bodies that are not streams are held up to BUFFER_LIMIT and sent in one write with a
  // Content-Length (fewer TLS records, and a body that fails to mask becomes a clean 502);
  // larger ones switch to chunked streaming so a big LIST is never held whole.
  let pending: Buffer[] | null = streaming ? null : [];
  let pendingLen = 0;
  const flushPending = () => {
    res.writeHead(up.statusCode, headers);
    for (const b of pending!) res.write(b);
    pending = null;
  };
  const keep = deps.level === 'RequestResponse' && !streaming ? ([] as Buffer[]) : undefined;
  let kept = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let failure: string | undefined;
  try {
    await eachChunk(up.body, (chunk) => {
      bytesIn += chunk.length;
      const out = masker.write(chunk);
      if (!out.length) return undefined;
      bytesOut += out.length;
      if (keep && kept < RESPONSE_OBJECT_LIMIT) {
        keep.push(out);
        kept += out.length;
      }
      if (pending) {
        pending.push(out);
        pendingLen += out.length;
        if (pendingLen > BUFFER_LIMIT) flushPending();
        return undefined;
      }
      if (x.clientGone) return STOP;
      return res.write(out) ? undefined : writable(res);
    });
    if (!x.clientGone) {
      const tail = masker.end();
      bytesOut += tail.length;
      keep?.push(tail);
      if (pending) {
        const whole =
          pending.length === 0 ? tail : pending.length === 1 && tail.length === 0 ? pending[0]! : Buffer.concat(tail.length ? [...pending, tail] : pending);
        headers['content-length'] = String(whole.length);
        res.writeHead(up.statusCode, headers);
        res.end(whole);
        pending = null;
      } else res.end(tail);
    }
  } catch (err) {
    if (!x.clientGone) {
      failure = (err as Error).message;
      refusedBodies.inc({ why: 'unmaskable' });
      deps.log.warn({ auditID: ctx.auditID, err: failure }, 'response could not be masked');
      if (!res.headersSent) sendStatus(res, status(502, 'InternalError', `agentgate: the API server's response could not be masked (${failure}), so it was refused`), { 'audit-id': ctx.auditID });
      else res.destroy();
      up.body.destroy();
    }
  } finally {
    if (streaming) openWatches.dec();
    if (x.clientGone) up.body.destroy();
  }
  if (!failure && !x.clientGone && plan?.kind === 'masked') plan.release?.();
  let responseObject: unknown;
  if (keep && kept < RESPONSE_OBJECT_LIMIT) {
    try {
      responseObject = JSON.parse(Buffer.concat(keep).toString('utf8'));
    } catch {
      responseObject = undefined;
    }
  }
  const code = failure ? 502 : up.statusCode;
  finish(x, code, { requestObject, responseObject, bytesIn, bytesOut, ...(failure ? { message: `agentgate: response cut, it could not be masked: ${failure}` } : x.clientGone ? { message: 'client closed the stream' } : {}) }, !streaming);
}
