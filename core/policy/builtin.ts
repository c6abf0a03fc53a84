// The built-in rules every policy gets, appended after the policy's own rules and
// shown by `policy explain` under their `builtin:` names. A policy replaces one by
// defining a rule with the same name (e.g. to let one agent run DO blocks).
//   guard    rules take part in most-restrictive-wins with the policy's rules, so an
//            allow written for something else never opens them by accident;
//   fallback rules apply only when no other rule matched, before spec.default.

import type { RuleDoc } from './schema.js';
import type { RuleTier } from './rules.js';

export interface BuiltinRule {
  tier: RuleTier;
  doc: RuleDoc;
}

/**
 * Functions whose call reaches outside the tables: the server's files, other servers,
 * other sessions, SQL passed as a string (which the proxy never classifies), and the
 * session's role or search_path. Kept in step with core/sql/dangerous.ts, whose
 * classifier also reports COPY … PROGRAM as `copy-program` and COPY to or from a
 * server file as `copy-file`.
 */
export const DANGEROUS_FUNCTIONS = [
  'pg_read_file', 'pg_read_binary_file', 'pg_stat_file', 'pg_ls_dir', 'pg_ls_*dir',
  'pg_file_write', 'pg_file_rename', 'pg_file_unlink', 'pg_file_sync', 'pg_logdir_ls',
  'lo_import', 'lo_export', 'dblink*',
  'query_to_xml*', 'cursor_to_xml*', 'table_to_xml*', 'schema_to_xml*', 'database_to_xml*', 'ts_stat',
  'set_config',
  'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_promote',
  'copy-program', 'copy-file',
];

export const BUILTIN_RULES: readonly BuiltinRule[] = [
  {
    tier: 'guard',
    doc: {
      name: 'builtin:dangerous-functions',
      description: 'functions and COPY forms that reach the server\'s files, programs, other servers or other sessions, or run SQL the proxy cannot see, are not run for agents',
      postgres: { functions: DANGEROUS_FUNCTIONS },
      action: 'deny',
    },
  },
  {
    tier: 'guard',
    doc: {
      name: 'builtin:procedural-code',
      description: 'DO blocks, CALL and statements the proxy cannot resolve run code it cannot see into',
      postgres: { statements: ['do', 'call', 'other'] },
      action: 'approve',
    },
  },
  {
    tier: 'fallback',
    doc: {
      name: 'builtin:discovery',
      description: 'API discovery, version and health endpoints (what Kubernetes\' system:discovery role allows)',
      kubernetes: {
        verbs: ['get', 'head'],
        nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/openapi', '/openapi/*', '/version', '/version/', '/healthz', '/livez', '/readyz'],
      },
      action: 'allow',
    },
  },
  {
    tier: 'fallback',
    doc: {
      name: 'builtin:impersonation',
      description: 'impersonation (Impersonate-* headers) is denied unless a rule allows it, whatever spec.default says',
      kubernetes: { verbs: ['impersonate'] },
      action: 'deny',
    },
  },
];

export const BUILTIN_NAMES: ReadonlySet<string> = new Set(BUILTIN_RULES.map((b) => b.doc.name));
