// The contract between the proxies (which classify requests) and the policy engine
// (which decides them). Proxies never interpret rules; the engine never parses protocols.

import type { Identity } from '../identity.js';

export type Action = 'allow' | 'deny' | 'approve';

/** Restrictiveness order: the most restrictive action among matching rules wins. */
export const ACTION_RANK: Record<Action, number> = { allow: 0, approve: 1, deny: 2 };

export const STATEMENT_KINDS = [
  'select', 'insert', 'update', 'delete', 'merge', 'copy-to', 'copy-from', 'truncate', 'drop',
  'create', 'alter', 'grant', 'revoke', 'set', 'show', 'transaction', 'call', 'do',
  // Row and table locks (SELECT … FOR UPDATE/SHARE, LOCK TABLE); LISTEN/UNLISTEN; NOTIFY and pg_notify().
  'lock', 'listen', 'notify',
  'other',
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

export const STATEMENT_QUALIFIERS = ['delete-without-where', 'update-without-where'] as const;
export type StatementQualifier = (typeof STATEMENT_QUALIFIERS)[number];

export const KUBE_VERBS = [
  'get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection',
  // Non-resource requests and special verbs, as the API server's authorizer sees them.
  'impersonate', 'proxy', 'head', 'options', 'post', 'put',
] as const;
export type KubeVerb = (typeof KUBE_VERBS)[number];

/** A Kubernetes API request, classified the way the API server's RequestInfoFactory does. */
export interface KubeRequest {
  protocol: 'kubernetes';
  verb: string;
  /** '' for the core group. */
  apiGroup: string;
  apiVersion: string;
  namespace: string;
  /** e.g. `pods`; empty for non-resource requests. */
  resource: string;
  /** e.g. `exec`, `log`, `status`; '' when none. */
  subresource: string;
  name: string;
  /** True for `/version`, `/api`, `/apis`, `/openapi/*`, `/healthz` and the like. */
  nonResource: boolean;
  /** The URL path, for non-resource matching and explanations. */
  path: string;
}

/**
 * One SQL operation. A query string with several statements, or a statement with
 * data-modifying CTEs, is classified into several operations; each is decided and
 * the most restrictive decision stands for the whole message.
 */
export interface PgRequest {
  protocol: 'postgres';
  connection: string;
  statement: StatementKind;
  qualifiers: StatementQualifier[];
  /** Schema-qualified tables (`public.cards`) the operation reads or writes. */
  tables: string[];
  /**
   * Functions called, schema-qualified where written so (`pg_read_file`, `pg_catalog.pg_read_file`,
   * `dblink`), names as PostgreSQL stores them (unquoted identifiers folded to lower case).
   * COPY … TO/FROM PROGRAM is reported as the pseudo-function `copy-program`, COPY to/from a
   * server-side file (neither STDIN nor STDOUT) as `copy-file` (agreed between core/sql and
   * core/policy; the built-in rule `builtin:dangerous-functions` denies both).
   * Matching (core/policy/README.md): the last dot-separated part is the name, the one before
   * it the schema; a deny/approve pattern without a schema matches the name in any schema.
   */
  functions: string[];
  /**
   * The entries of `functions` (and operators, as `operator(===)`) that an allow rule must
   * name for the operation to be allowed: everything but PostgreSQL 15's read-only
   * built-ins (core/sql/functions.ts). Absent (a request not built by core/sql): every
   * function counts, fail closed.
   */
  unlisted?: string[];
  /** Of `unlisted`, those only a pattern without `*` names: SQL run from text, session settings, COPY on the server. */
  exactOnly?: string[];
}

export type PolicyRequest = KubeRequest | PgRequest;

export type ApprovalMode = 'wait' | 'defer';
export type ApprovalScope = 'once' | 'window';

/** How an `approve` rule wants its approval handled (issue: approval service). */
export interface ApprovalSpec {
  mode: ApprovalMode;
  scope: ApprovalScope;
  waitSeconds: number;
  windowMinutes: number;
  approverGroups: string[];
  minApprovals: number;
}

export interface Decision {
  action: Action;
  /** Name of the winning rule, or `default` when none matched. */
  rule: string;
  /** A human sentence: why, and how to get access when refused. */
  reason: string;
  /** False in observe mode: the decision is recorded but the request proceeds. */
  enforced: boolean;
  /** Every rule that matched, in policy order. */
  matched: string[];
  /** Present when action is `approve`. */
  approval?: ApprovalSpec;
}

export interface PolicyDecider {
  decide(identity: Identity, request: PolicyRequest): Decision;
}

/** `spec.masking` of the policy in force: how proxies mask what they return and record. */
export interface MaskingSpec {
  /** `last4` (default) or `bin+last4`. */
  pan: 'last4' | 'bin+last4';
  /** Extra card-data field names (JSON keys) starred whole, beside the built-in list. */
  fields: string[];
  /** `schema.table.column` names whose values are starred whole in SQL results. */
  columns: string[];
  /** Kubernetes Secrets: `mask` decodes, masks and re-encodes values; `redact` replaces them entirely. */
  secrets: 'mask' | 'redact';
}

/** A loaded, validated policy. */
export interface Policy extends PolicyDecider {
  readonly name: string;
  readonly masking: MaskingSpec;
  readonly enforcement: 'enforce' | 'observe';
}

/**
 * Where proxies get the policy in force. Hot reload swaps what `current()` returns;
 * a reload that fails validation keeps the last good policy. When no policy could
 * ever be loaded, `current()` returns one that denies everything (fail closed).
 */
export interface PolicySource {
  current(): Policy;
}
