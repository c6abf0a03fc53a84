// The audit event of docs/architecture.md: compatible with Kubernetes audit.k8s.io/v1
// where fields overlap, plus agentgate's own. Producers fill an AuditEventInput;
// the chained writer adds `seq`, `prevHash` and `hash` and masks every string.

import type { PodIdentity } from '../identity.js';
import type { Action } from '../policy/types.js';

export type AuditStage = 'RequestReceived' | 'ResponseStarted' | 'ResponseComplete' | 'Panic';

export interface AuditUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface AuditObjectRef {
  resource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiGroup?: string;
  apiVersion?: string;
  resourceVersion?: string;
  subresource?: string;
}

export interface AuditEventInput {
  /** Present (`Event`, `audit.k8s.io/v1`) on Kubernetes events; the writer leaves them as given. */
  kind?: 'Event';
  apiVersion?: 'audit.k8s.io/v1';
  level?: 'Metadata' | 'Request' | 'RequestResponse';
  auditID: string;
  stage: AuditStage;
  requestURI?: string;
  verb?: string;
  user?: AuditUser;
  impersonatedUser?: AuditUser;
  sourceIPs?: string[];
  userAgent?: string;
  objectRef?: AuditObjectRef;
  responseStatus?: { code?: number; status?: string; reason?: string; message?: string; metadata?: Record<string, unknown> };
  requestObject?: unknown;
  responseObject?: unknown;
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  annotations?: Record<string, string>;

  // agentgate fields
  /** `kubernetes`, `postgres`, `approval` or `system` (start, stop, reload). */
  protocol: 'kubernetes' | 'postgres' | 'approval' | 'system';
  /** PostgreSQL connection name, or the cluster name for Kubernetes. */
  connection?: string;
  /** The SQL statement or `METHOD path`, masked. */
  statement?: string;
  /** Statement kinds and tables (PostgreSQL). */
  statementKinds?: string[];
  tables?: string[];
  decision?: { action: Action; rule: string; reason: string; enforced: boolean };
  approval?: { id: string; approver?: string; state?: string };
  pod?: PodIdentity;
  /** Connection or exec session id; session recordings are named by it. */
  session?: string;
  rows?: number;
  bytes?: { in?: number; out?: number };
  durationMs?: number;
  /** SQLSTATE of a PostgreSQL error. */
  sqlstate?: string;
  /** Free-form, bounded: e.g. `event: connection-start`. */
  event?: string;
  /** On `event: checkpoint` records only: the compact JWS the writer signed (see checkpoint.ts). */
  checkpoint?: string;
}

export interface AuditRecord extends AuditEventInput {
  seq: number;
  prevHash: string;
  hash: string;
}

/** Whether a sink accepts appends now; when not, why (shown to clients that are refused). */
export type AuditHealth = { ok: true } | { ok: false; reason: string };

/**
 * What every producer writes to. Append is synchronous and cheap (hot path); durability is batched.
 * Both proxies ask health() before they forward anything and refuse while it is not ok:
 * nothing runs that the trail could not record.
 */
export interface AuditSink {
  /**
   * Masks, chains and queues the event; returns the record as written (the
   * writer parses it from the line only when a field other than seq, prevHash
   * or hash is read). The event itself is left as it was. Throws
   * AuditUnavailableError when the sink refuses (backlog, disk full, write
   * error, closed); health() then says why until the sink can write again.
   */
  append(event: AuditEventInput): AuditRecord;
  /** Not ok while append would refuse; turns ok again by itself once the sink can write. */
  health(): AuditHealth;
  /** Resolves when everything appended so far is on disk (fsync). */
  flush(): Promise<void>;
  close(): Promise<void>;
}
