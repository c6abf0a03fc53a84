// The errors the PostgreSQL session answers with on its own: a statement or portal the
// proxy has no decision for (worded exactly as the server's error where the server would
// say the same), a result it cannot mask, an audit trail it cannot write, a protocol
// feature it does not allow.

import { refusal } from './decide.js';
import type { Verdict } from './decide.js';
import { ABSENT } from './tracker.js';
import type { UNKNOWN } from './tracker.js';

export const SETTINGS_IN_DOUBT = refusal(
  'session-parameter-pipeline',
  'a pipelined statement may have changed the settings this text is read under',
  'a statement containing a backslash or a non-ASCII character cannot follow an Execute in the same pipeline: the statement before it may change standard_conforming_strings or client_encoding, which the server reports only at the next ReadyForQuery; send a Sync first',
);
export const AUDIT_DOWN = refusal('audit-unavailable', 'the audit trail cannot be written', 'the audit trail cannot be written, so no statement is run (fail closed); the sidecar needs attention');
export const FUNCTION_CALL = refusal(
  'function-call-protocol',
  'the fast-path function call protocol bypasses SQL policy',
  'the fast-path function call protocol is not allowed; call the function in a SQL statement instead',
);

/** A refusal worded exactly as the server's own error for the same message. */
function serverLike(rule: string, reason: string, code: string, message: string, hint?: string): Verdict {
  return { forward: false, operations: [], decision: { action: 'deny', rule, reason, enforced: true, matched: [] }, error: { severity: 'ERROR', code, message, hint } };
}

export function statementExists(name: string): Verdict {
  return serverLike('statement-name-in-use', `prepared statement "${name}" already exists`, '42P05', `prepared statement "${name}" already exists`);
}

export function statementMayExist(name: string): Verdict {
  return serverLike(
    'statement-name-unknown',
    `prepared statement "${name}" may exist on the server without the proxy knowing what it is`,
    '42P05',
    `agentgate: prepared statement "${name}" may already exist: SQL PREPARE, DEALLOCATE or DISCARD changed the session's prepared statements; Close it first`,
  );
}

export function noStatement(name: string, state: typeof ABSENT | typeof UNKNOWN): Verdict {
  if (state === ABSENT) {
    const message = name === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${name}" does not exist`;
    return serverLike('no-such-statement', message, '26000', message);
  }
  return serverLike(
    'statement-not-decided',
    `prepared statement "${name}" was not prepared through the proxy, so it has no decision`,
    '26000',
    `agentgate: prepared statement "${name}" is not known to the proxy: SQL PREPARE, DEALLOCATE or DISCARD changed the session's prepared statements; Close it and Parse it again`,
    'A statement made with SQL PREPARE runs with SQL EXECUTE, which the proxy decides.',
  );
}

export function noPortal(name: string, state: typeof ABSENT | typeof UNKNOWN): Verdict {
  if (state === ABSENT) {
    const message = `portal "${name}" does not exist`;
    return serverLike('no-such-portal', message, '34000', message);
  }
  return serverLike(
    'portal-not-decided',
    `portal "${name}" was not bound through the proxy, so it has no decision`,
    '34000',
    `agentgate: portal "${name}" is not known to the proxy: SQL DECLARE, CLOSE or DISCARD changed the session's portals; read a cursor with FETCH`,
  );
}

/** `message` is the row plan's own, which names the type and says to use text format. */
export function cannotMask(message: string): Verdict {
  return serverLike('unmaskable-binary-result', message, '0A000', message);
}
