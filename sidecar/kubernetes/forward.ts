// One plain (non-upgrade) request: admit → forward with the real credential →
// mask the response as it streams → audit. Watches and log follows stream for as
// long as both ends stay; a client that goes away aborts the upstream request.

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../core/log.js';
import type { AuditSink } from '../../core/audit/types.js';
import { admit } from './admit.js';
import { auditableBody } from './audit-body.js';
import type { AdmitDeps } from './admit.js';
import { buildEvent } from './audit-event.js';
import type { AuditContext } from './audit-event.js';
import { codeClass, groupLabel, openWatches, refusedBodies, requestDuration, requestsTotal } from './metrics.js';
import { maskOptionsFor, planBody } from './response-body.js';
import { responseHeaders } from './response-headers.js';
import { sendStatus, status } from './status.js';
import type { StatusObject } from './status.js';
import type { Upstream } from './upstream.js';
import { JUSTIFICATION_HEADER } from './approval-gate.js';
import type { KubeApprovalGate } from './approval-gate.js';

/** The API server's own limit on a request body is 3 MiB; we hold bodies to audit them. */
export const MAX_REQUEST_BODY = 3 * 1024 * 1024;
const RESPONSE_OBJECT_LIMIT = 1024 * 1024;
const BUFFER_LIMIT = 64 * 1024;

export interface ForwardDeps extends AdmitDeps {
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

function isStreaming(verb: string, subresource: string, url: string): boolean {
  return verb === 'watch' || (subresource === 'log' && /[?&]follow=(true|1)\b/.test(url));
}

async function readBody(req: IncomingMessage): Promise<Buffer | StatusObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_REQUEST_BODY) return status(413, 'BadRequest', `agentgate: request body larger than ${MAX_REQUEST_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function forward(req: IncomingMessage, res: ServerResponse, deps: ForwardDeps): Promise<void> {
  const ctx: AuditContext = { auditID: randomUUID(), received: new Date(), req, cluster: deps.cluster, level: deps.level };
  const t0 = process.hrtime.bigint();
  // Audit-Id goes into each writeHead rather than setHeader here: writeHead with no headers
  // set before takes Node's fast path (no per-header merge).
  let verb = (req.method ?? '').toLowerCase();
  let group = 'non-resource';
  let decisionLabel = 'deny';

  const finish = (code: number, extra: Parameters<typeof buildEvent>[3] = {}, timed = true) => {
    requestsTotal.inc({ verb, group, decision: decisionLabel, code: codeClass(code) });
    if (timed) requestDuration.observe({ verb }, Number(process.hrtime.bigint() - t0) / 1e9);
    try {
      deps.audit.append(buildEvent(ctx, 'ResponseComplete', code, extra));
    } catch (err) {
      deps.log.error({ err: (err as Error).message, auditID: ctx.auditID }, 'audit append failed');
    }
  };
  const refuse = (s: StatusObject, extra: Parameters<typeof buildEvent>[3] = {}, headers: Record<string, string> = {}) => {
    sendStatus(res, s, { 'audit-id': ctx.auditID, ...headers });
    finish(s.code, { ...extra, message: s.message });
  };

  const a = await admit(req, deps);
  ctx.identity = a.identity;
  ctx.request = a.request;
  ctx.decision = a.decision;
  if (a.impersonated) ctx.impersonated = a.impersonated;
  if (a.request) {
    verb = a.request.verb;
    group = groupLabel(a.request.apiGroup, a.request.nonResource);
  }
  if (a.decision) decisionLabel = a.decision.action;
  const held = !a.ok && a.approvable && deps.approvals ? a.approvable : undefined;
  if (!a.ok && !held) {
    req.resume();
    return refuse(a.status);
  }
  const adm = a.ok ? a : held!;
  decisionLabel = adm.decision.enforced ? adm.decision.action : 'allow';
  if (deps.noUpstream) {
    decisionLabel = 'deny';
    req.resume();
    return refuse(status(403, 'Forbidden', `agentgate: ${deps.noUpstream}`, adm.request));
  }
  if (deps.auditBroken?.()) {
    // Nothing is done that could not be recorded (the refusal itself tries to append,
    // which is how a recovered trail lets requests through again).
    decisionLabel = 'deny';
    req.resume();
    return refuse(status(503, 'ServiceUnavailable', `agentgate: the audit trail is unavailable (${deps.auditBroken()}); requests are refused until it can record them again`, adm.request));
  }
  const request = adm.request;
  const opts = maskOptionsFor(adm.policy.masking);

  let body: Buffer | undefined;
  if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') {
    const b = await readBody(req);
    if (!Buffer.isBuffer(b)) return refuse(b);
    body = b;
  }
  const requestObject = body ? auditableBody(body, req.headers['content-type'], opts, request) : undefined;

  // undici takes an EventEmitter as its abort signal: far cheaper per request than an
  // AbortController, whose EventTarget costs more than the rest of the request setup.
  const abort = new UpstreamAbort();
  let clientGone = false;
  let holdAbort: AbortController | undefined;
  res.on('close', () => {
    if (!res.writableFinished) {
      clientGone = true;
      abort.abort();
      holdAbort?.abort();
    }
  });

  if (held) {
    holdAbort = new AbortController();
    if (clientGone) holdAbort.abort();
    const j = req.headers[JUSTIFICATION_HEADER];
    const outcome = await deps.approvals!.hold({
      identity: held.identity,
      request,
      decision: held.decision,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      ...(body ? { body } : {}),
      ...(typeof j === 'string' ? { justification: j } : {}),
      signal: holdAbort.signal,
    });
    if (outcome.approval) ctx.approval = outcome.approval;
    if (!outcome.forward) {
      if (clientGone) return finish(499, { message: outcome.reason, requestObject });
      return refuse(outcome.status!, { requestObject }, outcome.headers);
    }
  }

  const streaming = isStreaming(request.verb, request.subresource, req.url ?? '');
  const upstream = deps.upstream();

  const send = () =>
    upstream.dispatcher.request({
      path: req.url ?? '/',
      method: (req.method ?? 'GET') as 'GET',
      headers: adm.headers,
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
        adm.headers.authorization = upstream.authorization;
        up = await send();
      }
    }
  } catch (err) {
    if (clientGone) return finish(499, { message: 'client closed the request', requestObject });
    const msg = (err as Error).message;
    deps.log.warn({ err: msg, upstream: upstream.url.origin }, 'upstream unreachable');
    const s = status(503, 'ServiceUnavailable', `agentgate: the Kubernetes API server (${upstream.url.origin}) is unavailable: ${msg}`);
    sendStatus(res, s, { 'audit-id': ctx.auditID, 'retry-after': '1' });
    return finish(503, { message: s.message, requestObject });
  }
  // Destroying the body (refusal, client gone) emits an abort error nobody else awaits.
  up.body.on('error', () => undefined);
  ctx.upstreamAuditId = typeof up.headers['audit-id'] === 'string' ? up.headers['audit-id'] : undefined;

  const contentType = up.headers['content-type'] as string | undefined;
  const empty = req.method === 'HEAD' || up.statusCode === 204 || up.statusCode === 304 || up.headers['content-length'] === '0';
  const plan = empty ? undefined : planBody(request, contentType, adm.policy.masking.secrets, opts);
  if (plan?.kind === 'refuse') {
    up.body.destroy();
    refusedBodies.inc({ why: 'content-type' });
    deps.log.warn({ auditID: ctx.auditID, why: plan.why }, 'upstream response refused');
    return refuse(status(502, 'InternalError', `agentgate: ${plan.why}; responses are only passed on masked, so this one was refused`));
  }

  const headers = responseHeaders(up.headers, ctx.auditID, opts);
  if (empty) {
    if (up.headers['content-length'] !== undefined) headers['content-length'] = String(up.headers['content-length']);
    res.writeHead(up.statusCode, headers);
    res.end();
    up.body.resume();
    return finish(up.statusCode, { requestObject });
  }

  const masker = (plan as { masker: import('../../core/mask/text.js').StreamMasker }).masker;
  if (streaming) {
    res.writeHead(up.statusCode, headers);
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
      if (clientGone) return STOP;
      return res.write(out) ? undefined : writable(res);
    });
    if (!clientGone) {
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
    if (!clientGone) {
      failure = (err as Error).message;
      refusedBodies.inc({ why: 'unmaskable' });
      deps.log.warn({ auditID: ctx.auditID, err: failure }, 'response could not be masked');
      if (!res.headersSent) sendStatus(res, status(502, 'InternalError', `agentgate: the API server's response could not be masked (${failure}), so it was refused`), { 'audit-id': ctx.auditID });
      else res.destroy();
      up.body.destroy();
    }
  } finally {
    if (streaming) openWatches.dec();
    if (clientGone) up.body.destroy();
  }
  if (!failure && !clientGone && plan?.kind === 'masked') plan.release?.();
  let responseObject: unknown;
  if (keep && kept < RESPONSE_OBJECT_LIMIT) {
    try {
      responseObject = JSON.parse(Buffer.concat(keep).toString('utf8'));
    } catch {
      responseObject = undefined;
    }
  }
  const code = failure ? 502 : up.statusCode;
  finish(code, { requestObject, responseObject, bytesIn, bytesOut, ...(failure ? { message: `agentgate: response cut, it could not be masked: ${failure}` } : clientGone ? { message: 'client closed the stream' } : {}) }, !streaming);
}
