// Builds core/sql/pg15-catalog.ts, the proxy's list of PostgreSQL's built-in functions and
// operators by what calling them can do, from a real server's pg_proc and pg_operator.
//
// Volatility is where the list starts, not what decides it: a stable or immutable function
// may still run SQL it is given as text (query_to_xml is stable) or assign a transaction id
// (txid_current), and a volatile one may be read-only (random, clock_timestamp). The
// reviewed lists below are those exceptions; every name in them must exist in the catalogue
// (a typo or a release that renamed a function fails the generation instead of passing
// silently). A name is read-only only when every overload of it is: ts_rewrite(tsquery,
// tsquery, tsquery) is harmless, ts_rewrite(tsquery, text) runs its text argument.
//
//   node dist/test/support/function-catalog.js   # regenerates core/sql/pg15-catalog.ts
//
// test/core/sql/function-catalog.test.ts regenerates it from a throw-away cluster and
// asserts it equals the committed file.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Functions that execute SQL text or a query the proxy never classifies. */
export const RUNS_SQL = [
  // tsvector_op.c / tsquery_rewrite.c: the text argument is run through SPI.
  'ts_stat', 'ts_rewrite',
  // xml.c: a query string, an open cursor, or whole tables, schemas and databases read by
  // generated SQL, none of which the classifier sees as the tables they read.
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
  'cursor_to_xml', 'cursor_to_xmlschema',
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
  'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
];

/** Functions that change session settings; PostgreSQL 15 reports only some changes (not search_path). */
export const CHANGES_SETTINGS = ['set_config'];

/** Stable functions that still change state: they assign the transaction an id. */
export const STABLE_WITH_SIDE_EFFECTS = ['txid_current', 'pg_current_xact_id'];

/** Stable functions that read what the policy governs elsewhere: other sessions' statement text (the pg_stat_activity view). */
export const READS_OUTSIDE = ['pg_stat_get_activity', 'pg_stat_get_backend_activity'];

/** Volatile functions reviewed as read-only: they return a value and change nothing. */
export const VOLATILE_READ_ONLY = [
  'random', 'clock_timestamp', 'timeofday', 'gen_random_uuid', 'currval', 'lastval', 'current_query',
  'pg_is_in_recovery', 'pg_is_wal_replay_paused', 'pg_get_wal_replay_pause_state',
  'pg_current_wal_lsn', 'pg_current_wal_flush_lsn', 'pg_current_wal_insert_lsn',
  'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn', 'pg_last_xact_replay_timestamp', 'pg_last_committed_xact',
  'pg_database_size', 'pg_relation_size', 'pg_table_size', 'pg_indexes_size', 'pg_total_relation_size', 'pg_tablespace_size',
  'pg_jit_available', 'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids', 'pg_lock_status', 'pg_notification_queue_usage',
  'pg_collation_actual_version', 'pg_database_collation_actual_version', 'pg_partition_ancestors', 'pg_partition_tree',
  'pg_xact_commit_timestamp', 'pg_xact_commit_timestamp_origin', 'pg_xact_status', 'txid_status',
  'pg_control_checkpoint', 'pg_control_init', 'pg_control_recovery', 'pg_control_system', 'pg_stat_have_stats',
  'pg_stat_get_xact_blocks_fetched', 'pg_stat_get_xact_blocks_hit', 'pg_stat_get_xact_function_calls',
  'pg_stat_get_xact_function_self_time', 'pg_stat_get_xact_function_total_time', 'pg_stat_get_xact_numscans',
  'pg_stat_get_xact_tuples_deleted', 'pg_stat_get_xact_tuples_fetched', 'pg_stat_get_xact_tuples_hot_updated',
  'pg_stat_get_xact_tuples_inserted', 'pg_stat_get_xact_tuples_returned', 'pg_stat_get_xact_tuples_updated',
];

export type Query = (sql: string) => Promise<Array<Record<string, unknown>>>;

export interface FunctionCatalog {
  major: number;
  readOnly: string[];
  sideEffects: string[];
  runsSql: string[];
  changesSettings: string[];
  readsOutside: string[];
  readOnlyOperators: string[];
}

/** Reads the classes from the server behind `query` (any database: pg_catalog is the same in each). */
export async function readFunctionCatalog(query: Query): Promise<FunctionCatalog> {
  const [{ v }] = await query("SELECT current_setting('server_version_num')::int / 10000 AS v");
  const procs = await query(`
    SELECT proname AS name, bool_and(provolatile IN ('i', 's')) AS stable
      FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace
     GROUP BY proname ORDER BY proname COLLATE "C"`);
  const names = new Set(procs.map((r) => r.name as string));
  const reviewed = [...RUNS_SQL, ...CHANGES_SETTINGS, ...STABLE_WITH_SIDE_EFFECTS, ...READS_OUTSIDE, ...VOLATILE_READ_ONLY];
  const missing = reviewed.filter((n) => !names.has(n));
  if (missing.length) throw new Error(`reviewed functions missing from the catalogue: ${missing.join(', ')}`);
  const c: FunctionCatalog = { major: Number(v), readOnly: [], sideEffects: [], runsSql: [], changesSettings: [], readsOutside: [], readOnlyOperators: [] };
  const volatileOk = new Set(VOLATILE_READ_ONLY);
  for (const r of procs) {
    const n = r.name as string;
    if (RUNS_SQL.includes(n)) c.runsSql.push(n);
    else if (CHANGES_SETTINGS.includes(n)) c.changesSettings.push(n);
    else if (READS_OUTSIDE.includes(n)) c.readsOutside.push(n);
    else if (STABLE_WITH_SIDE_EFFECTS.includes(n)) c.sideEffects.push(n);
    else if (r.stable === true || volatileOk.has(n)) c.readOnly.push(n);
    else c.sideEffects.push(n);
  }
  const readOnly = new Set(c.readOnly);
  // An operator name is read-only when every pg_catalog operator of that name calls a
  // read-only pg_catalog function.
  const ops = await query(`
    SELECT o.oprname AS name, array_agg(p.proname::text) AS fns, bool_and(p.pronamespace = 'pg_catalog'::regnamespace) AS builtin
      FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
     WHERE o.oprnamespace = 'pg_catalog'::regnamespace
     GROUP BY o.oprname ORDER BY o.oprname COLLATE "C"`);
  for (const r of ops) {
    if (r.builtin === true && (r.fns as string[]).every((f) => readOnly.has(f))) c.readOnlyOperators.push(r.name as string);
  }
  return c;
}

function list(names: string[]): string {
  const lines: string[] = [];
  let cur = ' ';
  for (const n of names) {
    const item = ` ${JSON.stringify(n)},`;
    if (cur.length + item.length > 100) {
      lines.push(cur);
      cur = ' ';
    }
    cur += item;
  }
  if (cur.trim()) lines.push(cur);
  return `[\n${lines.join('\n')}\n]`;
}

/** The TypeScript source of core/sql/pg15-catalog.ts. */
export function renderFunctionCatalog(c: FunctionCatalog): string {
  return `// Generated by test/support/function-catalog.ts from PostgreSQL ${c.major}'s pg_proc and pg_operator;
// do not edit by hand (test/core/sql/function-catalog.test.ts checks it against a real server).
// Names of pg_catalog functions by what calling them can do; a name is listed as read-only
// only when every overload of it is.

export const CATALOG_MAJOR = ${c.major};

/** Stable or immutable, or volatile and reviewed as read-only: no side effect, no SQL run from text. */
export const READ_ONLY_FUNCTIONS: readonly string[] = ${list(c.readOnly)};

/** Volatile (or reviewed): may write, lock, signal, read server files or change state. */
export const SIDE_EFFECT_FUNCTIONS: readonly string[] = ${list(c.sideEffects)};

/** Run SQL given as text, a cursor's query or generated SQL over whole tables. */
export const RUNS_SQL_FUNCTIONS: readonly string[] = ${list(c.runsSql)};

/** Change session settings behind the proxy (search_path is never reported by PostgreSQL 15). */
export const SETTINGS_FUNCTIONS: readonly string[] = ${list(c.changesSettings)};

/** Read what the policy governs elsewhere (other sessions' statement text). */
export const READS_OUTSIDE_FUNCTIONS: readonly string[] = ${list(c.readsOutside)};

/** pg_catalog operator names whose every implementation is a read-only function. */
export const READ_ONLY_OPERATORS: readonly string[] = ${list(c.readOnlyOperators)};
`;
}

export const CATALOG_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../core/sql/pg15-catalog.ts');

async function main(): Promise<void> {
  const { startCluster } = await import('./postgres.js');
  const cluster = await startCluster();
  try {
    const catalog = await readFunctionCatalog((sql) => cluster.sql(sql));
    fs.writeFileSync(CATALOG_FILE, renderFunctionCatalog(catalog));
    process.stdout.write(`${CATALOG_FILE}: ${catalog.readOnly.length} read-only, ${catalog.sideEffects.length} with side effects, ${catalog.runsSql.length} running SQL, ${catalog.readOnlyOperators.length} operators\n`);
  } finally {
    await cluster.stop();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
