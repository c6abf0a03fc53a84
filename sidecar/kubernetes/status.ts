// Errors in the shape every Kubernetes client understands: a `Status` object, so
// kubectl prints `Error from server (Forbidden): …` and client libraries raise
// their usual typed errors.

import type { ServerResponse } from 'node:http';
import { maskText } from '../../core/mask/text.js';
import type { KubeRequest } from '../../core/policy/types.js';

export type StatusReason =
  | 'Unauthorized' | 'Forbidden' | 'BadRequest' | 'NotFound' | 'ServiceUnavailable' | 'InternalError'
  | 'MethodNotAllowed' | 'NotAcceptable' | 'UnsupportedMediaType' | 'Timeout' | 'TooManyRequests';

export interface StatusObject {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: StatusReason;
  details?: { name?: string; group?: string; kind?: string; retryAfterSeconds?: number };
  code: number;
}

/**
 * `retryAfterSeconds` goes into `details`, where client-go reads it (beside the Retry-After header).
 * The message and name are masked: they quote the request (an object named by a card number)
 * and upstream errors, and go to the agent and into the audit trail.
 */
export function status(code: number, reason: StatusReason, message: string, request?: KubeRequest, retryAfterSeconds?: number): StatusObject {
  const s: StatusObject = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: maskText(message), reason, code };
  if (request && !request.nonResource && (request.name || request.resource)) {
    s.details = { ...(request.name ? { name: maskText(request.name) } : {}), group: request.apiGroup, kind: request.resource };
  }
  if (retryAfterSeconds !== undefined) s.details = { ...s.details, retryAfterSeconds };
  return s;
}

export function sendStatus(res: ServerResponse, s: StatusObject, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(s);
  res.writeHead(s.code, { ...headers, 'content-type': 'application/json', 'cache-control': 'no-cache, private', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** `pods "web"` / `pods` / `/version`, as the API server names the target in a forbidden message. */
export function targetPhrase(r: KubeRequest): string {
  if (r.nonResource) return `${r.path}`;
  // As the API server words it: `pods "web-0" is forbidden` for pods/exec too.
  const res = `${r.resource}${r.apiGroup ? `.${r.apiGroup}` : ''}`;
  return r.name ? `${res} "${r.name}"` : res;
}
