// From statement text to a verdict: classify (core/sql, cached by exact text), decide
// every operation by policy, keep the most restrictive, and turn a refusal into the
// ErrorResponse the client will see. An `approve` decision comes back refused, with a
// message that says approval is required: the session holds it for the approval
// service when the sidecar has one (approval-gate.ts); without one the refusal stands
// (fail closed).

import type { Identity } from '../../core/identity.js';
import { ACTION_RANK } from '../../core/policy/types.js';
import type { Decision, PgRequest, PolicySource } from '../../core/policy/types.js';
import type { PgErrorFields } from './wire.js';

export interface ClassifiedStatement {
  readonly text: string;
  readonly operations: readonly PgRequest[];
}

export type Classified =
  | { ok: true; operations: readonly PgRequest[]; statements?: readonly ClassifiedStatement[] }
  | { ok: false; sqlstate: string; message: string; position?: number };

/** What the proxy needs from core/sql. */
export interface SqlClassifier {
  classify(sql: string, connection: string): Classified;
}

export interface Verdict {
  /** What the proxy does: forward, or answer with `error`. */
  forward: boolean;
  decision: Decision;
  operations: readonly PgRequest[];
  /** The statements of a multi-statement query string, each audited on its own. */
  statements?: readonly ClassifiedStatement[];
  error?: PgErrorFields;
}

const EMPTY_ALLOW: Decision = { action: 'allow', rule: 'empty-statement', reason: 'the query string holds no statement', enforced: true, matched: [] };

/** A refusal the proxy makes on its own (no policy rule involved). */
export function refusal(rule: string, reason: string, message: string, code = '42501'): Verdict {
  return {
    forward: false,
    operations: [],
    decision: { action: 'deny', rule, reason, enforced: true, matched: [] },
    error: { severity: 'ERROR', code, message: `agentgate: ${message}` },
  };
}

/**
 * The largest statement text the proxy parses. Parsing runs on the event loop every
 * session shares (about 1.4 s per MiB), so a larger statement is refused before it is
 * parsed: large values belong in Bind parameters or COPY data, which are not parsed.
 */
export const MAX_STATEMENT_BYTES = 1024 * 1024;

export function decideSql(sql: string, connection: string, identity: Identity, classifier: SqlClassifier, policy: PolicySource): Verdict {
  // UTF-16 length first: most statements skip the byte count.
  if (sql.length * 3 > MAX_STATEMENT_BYTES) {
    const bytes = Buffer.byteLength(sql);
    if (bytes > MAX_STATEMENT_BYTES) {
      return refusal(
        'statement-too-large',
        `the statement is ${bytes} bytes, over the ${MAX_STATEMENT_BYTES} the proxy parses`,
        `the statement is ${bytes} bytes, over the ${MAX_STATEMENT_BYTES} the proxy parses before a statement runs; send large values as Bind parameters or with COPY FROM STDIN`,
        '54000',
      );
    }
  }
  let classified: Classified;
  try {
    classified = classifier.classify(sql, connection);
  } catch (err) {
    classified = { ok: false, sqlstate: 'XX000', message: `could not classify statement: ${(err as Error).message}` };
  }
  if (!classified.ok) {
    const decision: Decision = {
      action: 'deny',
      rule: 'unparseable-sql',
      reason: `the statement does not parse, so it cannot be checked against policy: ${classified.message}`,
      enforced: true,
      matched: [],
    };
    return {
      forward: false,
      decision,
      operations: [],
      error: { severity: 'ERROR', code: classified.sqlstate, message: classified.message, position: classified.position },
    };
  }
  const verdict = decideOperations(classified.operations, identity, policy);
  if (classified.statements && classified.statements.length > 1) verdict.statements = classified.statements;
  return verdict;
}

export function decideOperations(operations: readonly PgRequest[], identity: Identity, source: PolicySource): Verdict {
  if (operations.length === 0) return { forward: true, decision: EMPTY_ALLOW, operations };
  const policy = source.current();
  let worst: Decision | undefined;
  for (const op of operations) {
    let d: Decision;
    try {
      d = policy.decide(identity, op);
    } catch (err) {
      d = { action: 'deny', rule: 'policy-error', reason: `the policy could not decide: ${(err as Error).message}`, enforced: true, matched: [] };
    }
    if (!worst || ACTION_RANK[d.action] > ACTION_RANK[worst.action]) worst = d;
    if (worst.action === 'deny' && worst.enforced) break;
  }
  const decision = worst!;
  if (decision.action === 'allow' || !decision.enforced) return { forward: true, decision, operations };
  const approval = decision.action === 'approve';
  // The engine's reason usually names the rule already; say it once.
  const named = decision.reason.includes(decision.rule) ? decision.reason : `rule "${decision.rule}": ${decision.reason}`;
  const message = approval ? `agentgate: approval required: ${named}` : `agentgate: permission denied: ${named}`;
  return {
    forward: false,
    decision,
    operations,
    error: {
      severity: 'ERROR',
      code: '42501',
      message,
      hint: approval
        ? 'This statement needs a human approval, and no approval service is configured for this sidecar, so it is refused (fail closed).'
        : 'Ask the policy owner for a rule that allows this statement; `agentgate policy explain` shows which rule decided.',
    },
  };
}
