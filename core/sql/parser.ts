// The one door to libpg-query (a WASM build of PostgreSQL's own parser, PG 18).
// The module compiles asynchronously once; after `loadSqlParser()` resolves, parsing is
// synchronous, so the proxy's hot path never awaits. Errors come back in the shape
// PostgreSQL's ErrorResponse needs: SQLSTATE, message, 1-based character position.

import { loadModule, parseSync, hasSqlDetails } from 'libpg-query';

/** A raw parse tree node as libpg-query's JSON gives it: `{ TypeName: { ...fields } }`. */
export type AstNode = Record<string, unknown>;

export interface RawStatement {
  /** `{ SelectStmt: {...} }` and the like. */
  stmt: AstNode;
  /** Byte offset of the statement in the UTF-8 text (0 when absent). */
  stmtLocation: number;
  /** Byte length, 0 meaning "to the end of the string". */
  stmtLen: number;
}

export type ParseOutcome =
  | { ok: true; statements: RawStatement[] }
  | { ok: false; sqlstate: string; message: string; position?: number };

export const TOO_DEEP = 'statement is too deeply nested to be checked (stack depth limit exceeded)';

let loaded = false;
let loading: Promise<void> | undefined;

/** Compiles the WASM parser once; every later call returns at once. */
export function loadSqlParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

export function sqlParserLoaded(): boolean {
  return loaded;
}

export function parseSql(sql: string): ParseOutcome {
  if (!loaded) throw new Error('SQL parser not loaded: await loadSqlParser() before classifying');
  // The parser reads a C string: text after a NUL would be invisible to it yet could reach
  // the server by another path. PostgreSQL itself refuses such a message (08P01).
  if (sql.includes('\0')) {
    return { ok: false, sqlstate: '08P01', message: 'invalid message format: statement text contains a NUL byte' };
  }
  // An empty string is a valid query for PostgreSQL (EmptyQueryResponse); libpg-query refuses it.
  if (sql === '') return { ok: true, statements: [] };
  let tree: { stmts?: Array<{ stmt?: AstNode; stmt_location?: number; stmt_len?: number }> };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch (err) {
    if (hasSqlDetails(err)) {
      const details = err.sqlDetails!;
      const sqlstate = /stack depth limit exceeded/.test(details.message) ? '54001' : '42601';
      // libpg-query converts PostgreSQL's 1-based character cursor to 0-based; undo that.
      return { ok: false, sqlstate, message: details.message, position: details.cursorPosition + 1 };
    }
    // JSON.parse of a tree deeper than the JS stack (thousands of chained operators).
    if (err instanceof RangeError) return { ok: false, sqlstate: '54001', message: TOO_DEEP };
    return { ok: false, sqlstate: 'XX000', message: `could not parse statement: ${(err as Error).message}` };
  }
  const statements: RawStatement[] = [];
  for (const s of tree.stmts ?? []) {
    if (!s.stmt) continue;
    statements.push({ stmt: s.stmt, stmtLocation: s.stmt_location ?? 0, stmtLen: s.stmt_len ?? 0 });
  }
  return { ok: true, statements };
}
