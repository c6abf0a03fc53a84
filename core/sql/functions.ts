// What calling a function (or an operator) can do, as far as the proxy knows: the built-in
// classes come from PostgreSQL 15's own catalogue (pg15-catalog.ts, generated); everything
// else is unknown, and the policy must name it. Fail closed: a name is read-only only when
// it is a pg_catalog function every overload of which is read-only, called unqualified or
// as pg_catalog.f. Any other schema is a user-defined or extension function, even when its
// name is that of a built-in (public.lower is not pg_catalog.lower).
//
// An unqualified name is taken as the pg_catalog function of that name: pg_catalog is searched
// before the default search_path, but PostgreSQL picks the best match by argument types
// across the path, so a same-named function in a schema on the path with a closer signature
// (CREATE FUNCTION public.lower(varchar)) would run instead. Creating one needs CREATE on
// that schema, which PostgreSQL 15 no longer grants on public: the server's permissions are
// the second lock here, as the README says.

import {
  READ_ONLY_FUNCTIONS, READ_ONLY_OPERATORS, READS_OUTSIDE_FUNCTIONS, RUNS_SQL_FUNCTIONS, SETTINGS_FUNCTIONS, SIDE_EFFECT_FUNCTIONS,
} from './pg15-catalog.js';

export type FunctionClass =
  /** A built-in with no side effect that runs no SQL text: allowed without a rule. */
  | 'read-only'
  /** pg_notify: its effect is the statement kind `notify`, decided as its own operation. */
  | 'notify'
  /** A built-in that may write, lock, signal, read server files or change state. */
  | 'side-effects'
  /** A built-in or a known extension function that runs SQL given as text. */
  | 'runs-sql'
  /** A built-in that changes session settings behind the proxy. */
  | 'settings'
  /** A built-in that reads what the policy governs elsewhere. */
  | 'reads-outside'
  /** The proxy's own names for COPY … PROGRAM and COPY to/from a server file. */
  | 'copy-server'
  /** Not a PostgreSQL built-in: user-defined, or from an extension. */
  | 'unknown'
  /** An operator that is not a pg_catalog operator whose functions are all read-only. */
  | 'unknown-operator';

/** Classes an allow rule must name for the operation to be allowed. */
export function needsRule(c: FunctionClass): boolean {
  return c !== 'read-only' && c !== 'notify';
}

/** Classes only a rule naming the function without `*` opens: a wildcard never reaches them. */
export function needsExactRule(c: FunctionClass): boolean {
  return c === 'runs-sql' || c === 'settings' || c === 'copy-server';
}

export const FUNCTION_CLASS_REASONS: Record<FunctionClass, string> = {
  'read-only': 'a PostgreSQL 15 built-in without side effects that runs no SQL text: allowed without a rule',
  notify: 'sends a notification: decided as a `notify` operation',
  'side-effects': 'a PostgreSQL 15 built-in that may write, lock, signal or change state: an allow rule must name it',
  'runs-sql': 'runs SQL given as text (or over whole tables) that the proxy never sees: only an allow rule naming it exactly, without *, opens it',
  settings: 'changes session settings behind the proxy (PostgreSQL 15 does not report search_path): only an allow rule naming it exactly opens it',
  'reads-outside': 'a PostgreSQL 15 built-in that reads what the policy governs elsewhere (other sessions\' statements): an allow rule must name it',
  'copy-server': 'COPY with a server-side program or file: only an allow rule naming it exactly opens it',
  unknown: 'not a PostgreSQL 15 built-in (user-defined or extension): the proxy cannot see what it does, so an allow rule must name it',
  'unknown-operator': 'an operator that is not one of PostgreSQL 15\'s read-only built-ins (user-defined or extension): an allow rule must name it',
};

const BUILTIN = new Map<string, FunctionClass>();
for (const n of READ_ONLY_FUNCTIONS) BUILTIN.set(n, 'read-only');
for (const n of SIDE_EFFECT_FUNCTIONS) BUILTIN.set(n, 'side-effects');
for (const n of RUNS_SQL_FUNCTIONS) BUILTIN.set(n, 'runs-sql');
for (const n of SETTINGS_FUNCTIONS) BUILTIN.set(n, 'settings');
for (const n of READS_OUTSIDE_FUNCTIONS) BUILTIN.set(n, 'reads-outside');
BUILTIN.set('pg_notify', 'notify');

const OPERATORS = new Set(READ_ONLY_OPERATORS);

/**
 * Extension functions known to run SQL given as text, in whatever schema they were
 * installed: dblink, tablefunc's crosstab and connectby, xml2's xpath_table, pg_cron's
 * scheduler. A look-alike of the same name elsewhere counts too (a false alarm is cheaper).
 */
const EXTENSION_RUNS_SQL = new Set(['connectby', 'xpath_table']);
const EXTENSION_RUNS_SQL_PREFIXES = ['dblink', 'crosstab'];
const CRON_RUNS_SQL = new Set(['schedule', 'schedule_in_database', 'alter_job']);

function builtinSchema(parts: readonly string[]): boolean {
  // `db.pg_catalog.f` is accepted by PostgreSQL for the current database.
  return parts.length === 1 || parts[parts.length - 2] === 'pg_catalog';
}

/** The class of a function called by the parts of its name (`['f']`, `['s', 'f']`). */
export function functionClass(parts: readonly string[]): FunctionClass {
  const name = parts[parts.length - 1] ?? '';
  if (EXTENSION_RUNS_SQL.has(name) || EXTENSION_RUNS_SQL_PREFIXES.some((p) => name.startsWith(p))) return 'runs-sql';
  if (parts.length >= 2 && parts[parts.length - 2] === 'cron' && CRON_RUNS_SQL.has(name)) return 'runs-sql';
  if (!builtinSchema(parts)) return 'unknown';
  return BUILTIN.get(name) ?? 'unknown';
}

/** Whether PostgreSQL 15 has a pg_catalog function of this name (where an unqualified call of it resolves). */
export function isBuiltinFunctionName(name: string): boolean {
  return BUILTIN.has(name);
}

/** Whether an operator (`['+']`, `['s', '===']`) is a read-only built-in. */
export function operatorIsReadOnly(parts: readonly string[]): boolean {
  return builtinSchema(parts) && OPERATORS.has(parts[parts.length - 1] ?? '');
}

/**
 * The class of a name as the classifier reports it (`pg_catalog.lower`, `"a.b".f`,
 * `operator(===)`, `copy-program`), for explanations. Dots inside double quotes do not
 * separate; quoted parts are unquoted.
 */
export function reportedFunctionClass(reported: string): FunctionClass {
  if (reported === 'copy-program' || reported === 'copy-file') return 'copy-server';
  const parts = splitReported(reported);
  const last = parts[parts.length - 1] ?? '';
  if (last.startsWith('operator(') && last.endsWith(')')) {
    return operatorIsReadOnly([...parts.slice(0, -1), last.slice(9, -1)]) ? 'read-only' : 'unknown-operator';
  }
  return functionClass(parts);
}

function splitReported(name: string): string[] {
  if (!name.includes('"')) return name.split('.');
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === '"') {
      if (quoted && name[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === '.' && !quoted) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}
