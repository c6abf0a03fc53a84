// The approval request as the service stores it and the API returns it. One shape
// for the storage layer, the HTTP API, the sidecar client and the approvers' CLI.

import type { PodIdentity } from '../core/identity.js';
import type { ApprovalMode, ApprovalScope } from '../core/policy/types.js';

export type ApprovalState = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
export const APPROVAL_STATES: readonly ApprovalState[] = ['pending', 'approved', 'denied', 'expired', 'cancelled', 'used'];
/** States nothing leaves: a waiting client stops waiting on them. */
export const FINAL_STATES: ReadonlySet<ApprovalState> = new Set(['denied', 'expired', 'cancelled', 'used']);

export interface Requester {
  /** The pod, always: taken from the sidecar's verified service-account token, never from the body. */
  pod: PodIdentity;
  /** `system:serviceaccount:<ns>:<sa>`. */
  serviceAccountSubject: string;
  /** The agent's own OIDC subject when it presented one to the sidecar. */
  subject?: string;
  issuer?: string;
}

export interface ApprovalDecisionRecord {
  approver: string;
  verdict: 'approve' | 'deny';
  reason: string;
  at: string;
}

export interface ApprovalRequest {
  id: string;
  state: ApprovalState;
  protocol: 'postgres' | 'kubernetes';
  /** PostgreSQL connection name or Kubernetes cluster name. */
  connection: string;
  /** The operation, masked: SQL text or `METHOD path`. */
  operation: string;
  rule: string;
  justification?: string;
  requester: Requester;
  mode: ApprovalMode;
  scope: ApprovalScope;
  windowMinutes: number;
  approverGroups: string[];
  minApprovals: number;
  /** sha256 of identity + connection + operation bytes: what a `once` approval is bound to. */
  binding: string;
  /** Statement fingerprint: what a `window` approval is bound to (with identity and rule). */
  fingerprint: string;
  createdAt: string;
  /** When a pending request expires. */
  expiresAt: string;
  decidedAt?: string;
  /** Until when an approval may be used (once) or reused (window). */
  validUntil?: string;
  usedAt?: string;
  uses: number;
  decisions: ApprovalDecisionRecord[];
}

/** What a sidecar asks for (the service derives identity, binding, timestamps and state). */
export interface CreateApprovalInput {
  protocol: 'postgres' | 'kubernetes';
  connection: string;
  /** The raw operation: hashed for the binding, then masked before it is stored. */
  operation: string;
  rule: string;
  justification?: string;
  mode?: ApprovalMode;
  scope?: ApprovalScope;
  windowMinutes?: number;
  approverGroups?: string[];
  minApprovals?: number;
  /** Statement fingerprint for `window` scope (e.g. libpg-query's); default: sha256 of the operation. */
  fingerprint?: string;
  /** Agent OIDC subject the sidecar verified. */
  subject?: string;
  issuer?: string;
}

/** Stable error codes of the API (`{code, message}`), also thrown by the service. */
export type ApprovalErrorCode =
  | 'bad-request' | 'unauthenticated' | 'forbidden' | 'not-found' | 'conflict' | 'self-approval'
  | 'not-an-approver' | 'already-decided' | 'reason-required' | 'not-pending' | 'not-approved'
  | 'method-not-allowed' | 'payload-too-large' | 'unavailable' | 'internal';

export class ApprovalError extends Error {
  override name = 'ApprovalError';
  constructor(readonly code: ApprovalErrorCode, message: string, readonly status = statusOf(code)) {
    super(message);
  }
}

function statusOf(code: ApprovalErrorCode): number {
  switch (code) {
    case 'bad-request': case 'reason-required': return 400;
    case 'unauthenticated': return 401;
    case 'forbidden': case 'self-approval': case 'not-an-approver': return 403;
    case 'not-found': return 404;
    case 'method-not-allowed': return 405;
    case 'conflict': case 'already-decided': case 'not-pending': case 'not-approved': return 409;
    case 'payload-too-large': return 413;
    case 'unavailable': return 503;
    default: return 500;
  }
}
