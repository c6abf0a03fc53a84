// Functions whose mere call reaches outside the database's tables: the server's file
// system, other servers, dynamic SQL the proxy never sees, or the session's role.
// The classifier reports every function called; this list tells the policy which of them
// are dangerous. Matching ignores the schema (`pg_catalog.pg_read_file` and a look-alike in
// another schema both count: a false alarm is cheaper than a miss).

/** Pseudo-functions the classifier reports for COPY with a server-side program or file. */
export const COPY_PROGRAM = 'copy-program';
export const COPY_FILE = 'copy-file';

const EXACT = new Set([
  // Server file system (pg_read_server_files and friends).
  'pg_read_file', 'pg_read_binary_file', 'pg_stat_file', 'pg_ls_dir', 'pg_ls_logdir', 'pg_ls_waldir',
  'pg_ls_tmpdir', 'pg_ls_archive_statusdir', 'pg_ls_logicalsnapdir', 'pg_ls_logicalmapdir',
  'pg_ls_replslotdir', 'pg_ls_summariesdir',
  // adminpack.
  'pg_file_write', 'pg_file_rename', 'pg_file_unlink', 'pg_file_sync', 'pg_logdir_ls',
  // Server-side large-object file transfer.
  'lo_import', 'lo_export',
  // Run SQL text given as a string argument, which the proxy never classifies.
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
  'cursor_to_xml', 'cursor_to_xmlschema',
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
  'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  'ts_stat',
  // Session role and search_path without a SET statement (set_config('role', ...)).
  'set_config',
  // Other sessions and the server process.
  'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_promote',
  COPY_PROGRAM, COPY_FILE,
]);

export function isDangerousFunction(name: string): boolean {
  const dot = name.lastIndexOf('.');
  const bare = dot >= 0 ? name.slice(dot + 1) : name;
  return EXACT.has(bare) || bare.startsWith('dblink');
}
