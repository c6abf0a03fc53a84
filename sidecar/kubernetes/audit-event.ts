// Builds the audit.k8s.io/v1 Event the API server itself would write, with the
// decision in `annotations` under the API server's own keys, so one query covers
// the API server's audit log and agentgate's.

import type { IncomingMessage } from 'node:http';
import type { AuditEventInput, AuditObjectRef, AuditUser } from '../../core/audit/types.js';
import type { Identity } from '../../core/identity.js';
import type { Decision, KubeRequest } from '../../core/policy/types.js';
import { credentialBearing } from './audit-body.js';

export interface AuditContext {
  auditID: string;
  received: Date;
  req: IncomingMessage;
  identity?: Identity;
  impersonated?: AuditUser;
  request?: KubeRequest;
  decision?: Decision;
  cluster: string;
  level: 'Metadata' | 'Request' | 'RequestResponse';
  upstreamAuditId?: string;
  session?: string;
  sessionFile?: string;
  /** The approval an `approve` decision asked for, and its outcome. */
  approval?: { id: string; approver?: string; state: string };
}

export function auditUser(identity: Identity | undefined): AuditUser {
  if (!identity) return { username: 'system:anonymous', groups: ['system:unauthenticated'] };
  const u: AuditUser = { username: identity.subject, groups: identity.groups };
  // Which kind of identity it is: the local token stands for the pod's service account.
  const kind = identity.via === 'local-token' ? 'service-account' : identity.via;
  u.extra = { 'agentgate.dev/identity': [kind], ...(identity.via === 'oidc' && identity.issuer ? { 'agentgate.dev/issuer': [identity.issuer] } : {}) };
  return u;
}

function objectRef(r: KubeRequest | undefined): AuditObjectRef | undefined {
  if (!r || r.nonResource) return undefined;
  const ref: AuditObjectRef = { resource: r.resource, apiVersion: r.apiVersion };
  if (r.namespace) ref.namespace = r.namespace;
  if (r.name) ref.name = r.name;
  if (r.apiGroup) ref.apiGroup = r.apiGroup;
  if (r.subresource) ref.subresource = r.subresource;
  return ref;
}

export function buildEvent(
  ctx: AuditContext,
  stage: 'ResponseStarted' | 'ResponseComplete',
  code: number,
  extra: { message?: string; requestObject?: unknown; responseObject?: unknown; bytesIn?: number; bytesOut?: number } = {},
): AuditEventInput {
  const now = new Date();
  const d = ctx.decision;
  const annotations: Record<string, string> = {};
  if (d) {
    annotations['authorization.k8s.io/decision'] = d.action === 'allow' || !d.enforced ? 'allow' : 'forbid';
    annotations['authorization.k8s.io/reason'] = d.reason;
    annotations['agentgate.dev/rule'] = d.rule;
    annotations['agentgate.dev/action'] = d.action;
    if (!d.enforced) annotations['agentgate.dev/enforced'] = 'false';
  }
  if (ctx.upstreamAuditId) annotations['agentgate.dev/upstream-audit-id'] = ctx.upstreamAuditId;
  if (ctx.sessionFile) annotations['agentgate.dev/session-file'] = ctx.sessionFile;
  const r = ctx.request;
  // Credential-bearing requests are recorded at Metadata level whatever the configured one.
  const credentials = credentialBearing(r);
  const level = credentials ? 'Metadata' : ctx.level;
  if (credentials && ctx.level !== 'Metadata') annotations['agentgate.dev/bodies-omitted'] = `${credentials} bodies are never recorded`;
  const ev: AuditEventInput = {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level,
    auditID: ctx.auditID,
    stage,
    requestURI: ctx.req.url ?? '',
    verb: r?.verb ?? (ctx.req.method ?? '').toLowerCase(),
    user: auditUser(ctx.identity),
    sourceIPs: [ctx.req.socket.remoteAddress ?? ''],
    userAgent: String(ctx.req.headers['user-agent'] ?? ''),
    responseStatus: { metadata: {}, code, ...(code >= 400 && extra.message ? { status: 'Failure', message: extra.message } : {}) },
    requestReceivedTimestamp: ctx.received.toISOString(),
    stageTimestamp: now.toISOString(),
    annotations,
    protocol: 'kubernetes',
    connection: ctx.cluster,
    statement: `${ctx.req.method ?? ''} ${ctx.req.url ?? ''}`,
    durationMs: now.getTime() - ctx.received.getTime(),
  };
  const ref = objectRef(r);
  if (ref) ev.objectRef = ref;
  if (ctx.impersonated) ev.impersonatedUser = ctx.impersonated;
  if (d) ev.decision = { action: d.action, rule: d.rule, reason: d.reason, enforced: d.enforced };
  if (ctx.identity?.pod) ev.pod = ctx.identity.pod;
  if (ctx.session) ev.session = ctx.session;
  if (ctx.approval) {
    ev.approval = ctx.approval;
    annotations['agentgate.dev/approval'] = `${ctx.approval.id} ${ctx.approval.state}`;
  }
  if (extra.requestObject !== undefined && level !== 'Metadata') ev.requestObject = extra.requestObject;
  if (extra.responseObject !== undefined && level === 'RequestResponse') ev.responseObject = extra.responseObject;
  if (extra.bytesIn !== undefined || extra.bytesOut !== undefined) ev.bytes = { in: extra.bytesIn ?? 0, out: extra.bytesOut ?? 0 };
  return ev;
}
