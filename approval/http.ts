// The approval service's HTTP API (described in approval/openapi.json, served at
// /openapi.json). Every error is JSON `{code, message}` with a stable code.

import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../core/log.js';
import type { Authenticator } from './auth.js';
import type { ApprovalService, Principal } from './service.js';
import { ApprovalError, APPROVAL_STATES } from './types.js';
import type { ApprovalState, CreateApprovalInput } from './types.js';

const log = createLogger('approval');
const MAX_BODY = 128 * 1024;

export interface ApiOptions {
  service: ApprovalService;
  auth: Authenticator;
  /** Longest long-poll a client may ask for (default 60 s). */
  maxWaitSeconds?: number;
}

let openapiText: string | undefined;
/** The OpenAPI document, read from beside the source (dist/ or the repo). */
export function openapiDocument(): string {
  if (openapiText) return openapiText;
  const candidates = [new URL('./openapi.json', import.meta.url), new URL('../../approval/openapi.json', import.meta.url)].map((u) => fileURLToPath(u));
  const file = candidates.find((f) => existsSync(f));
  if (!file) throw new ApprovalError('internal', 'openapi.json is missing from this installation');
  openapiText = readFileSync(file, 'utf8');
  return openapiText;
}

/** Parses `30s`, `500ms`, `2m` or plain seconds. */
export function parseWait(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (!m) throw new ApprovalError('bad-request', `wait must be a duration like 30s, 500ms or 2m, not ${JSON.stringify(v)}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

export function createApiHandler(opts: ApiOptions): http.RequestListener {
  const { service, auth } = opts;
  const maxWaitMs = (opts.maxWaitSeconds ?? 60) * 1000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    if (path === '/healthz') return send(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const ok = await service.store.ping();
      return ok ? send(res, 200, { status: 'ready' }) : sendError(res, new ApprovalError('unavailable', 'the approval store does not answer'));
    }
    if (path === '/openapi.json') return send(res, 200, openapiDocument());

    const m = /^\/v1\/approvals(?:\/([A-Za-z0-9-]{1,64})(?:\/(approve|deny|cancel|use))?)?\/?$/.exec(path);
    if (!m) throw new ApprovalError('not-found', `no such resource ${path} (see /openapi.json)`);
    const [, id, action] = m;
    const who = await auth.authenticate(req.headers.authorization);

    if (!id) {
      if (method === 'GET') {
        const state = url.searchParams.get('state') ?? undefined;
        if (state !== undefined && !APPROVAL_STATES.includes(state as ApprovalState)) {
          throw new ApprovalError('bad-request', `state must be one of ${APPROVAL_STATES.join(', ')}`);
        }
        const limit = url.searchParams.has('limit') ? Number(url.searchParams.get('limit')) : undefined;
        if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new ApprovalError('bad-request', 'limit must be a positive integer');
        return send(res, 200, { items: await service.list(who, state as ApprovalState | undefined, limit) });
      }
      if (method === 'POST') {
        const body = (await readJson(req)) as CreateApprovalInput;
        const { request, reused } = await service.create(sidecarOnly(who, 'create approval requests'), body);
        return send(res, reused ? 200 : 201, request, reused ? undefined : { location: `/v1/approvals/${request.id}` });
      }
      throw new ApprovalError('method-not-allowed', `${method} is not allowed on /v1/approvals (GET or POST)`);
    }

    if (!action) {
      if (method !== 'GET') throw new ApprovalError('method-not-allowed', `${method} is not allowed on /v1/approvals/{id} (GET)`);
      const wait = url.searchParams.get('wait');
      if (wait === null) return send(res, 200, await service.get(who, id));
      const ms = Math.min(parseWait(wait), maxWaitMs);
      const ac = new AbortController();
      const onClose = () => ac.abort();
      res.on('close', onClose);
      try {
        return send(res, 200, await service.wait(who, id, ms, ac.signal));
      } finally {
        res.off('close', onClose);
      }
    }

    if (method !== 'POST') throw new ApprovalError('method-not-allowed', `${method} is not allowed on /v1/approvals/{id}/${action} (POST)`);
    if (action === 'approve' || action === 'deny') {
      if (who.kind !== 'approver') throw new ApprovalError('forbidden', 'only approvers (OIDC) may approve or deny; sidecars cannot decide');
      const body = (await readJson(req, true)) as { reason?: unknown };
      if (body.reason !== undefined && typeof body.reason !== 'string') throw new ApprovalError('bad-request', 'reason must be a string');
      return send(res, 200, await service.decide(who, id, action, body.reason as string | undefined));
    }
    const sidecar = sidecarOnly(who, `${action} approval requests`);
    return send(res, 200, action === 'cancel' ? await service.cancel(sidecar, id) : await service.use(sidecar, id));
  }

  return (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!(err instanceof ApprovalError)) {
        log.error({ err: (err as Error).message, path: req.url?.split('?')[0] }, 'approval API request failed');
        err = new ApprovalError('internal', 'internal error; see the service log');
      }
      sendError(res, err as ApprovalError);
    });
  };
}

function sidecarOnly(who: Principal, what: string) {
  if (who.kind !== 'sidecar') throw new ApprovalError('forbidden', `only sidecars (pod service-account tokens) may ${what}`);
  return who;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function sendError(res: http.ServerResponse, err: ApprovalError): void {
  const headers: Record<string, string> = err.status === 401 ? { 'www-authenticate': 'Bearer' } : {};
  send(res, err.status, { code: err.code, message: err.message }, headers);
}

async function readJson(req: http.IncomingMessage, emptyOk = false): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new ApprovalError('payload-too-large', `the request body is larger than ${MAX_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  if (n === 0 && emptyOk) return {};
  if (!/^application\/json\b/i.test(type)) throw new ApprovalError('bad-request', 'the body must be JSON (Content-Type: application/json)');
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch (err) {
    throw new ApprovalError('bad-request', `the body is not a JSON object: ${(err as Error).message}`);
  }
}
