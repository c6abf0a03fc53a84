// The SQL classifier: statement text → the PgRequest operations the policy decides.
//
// Usage (the proxy): `await loadSqlParser()` once at start-up, then on every Query/Parse
//   const c = classifySql(sql, 'payments');
//   if (!c.ok) → ErrorResponse(S=ERROR, C=c.sqlstate, M=c.message, P=c.position) — deny, fail closed
//   else       → decide each of c.operations; the most restrictive decision stands for the message.
//
// To the policy engine (core/policy) — what an operation means:
// - `statement`: one of STATEMENT_KINDS. Every top-level statement yields its own operation
//   first; a multi-statement string yields one group per statement (c.statements).
// - `tables`: schema-qualified, see names.ts. Unqualified names are reported as `public.x`
//   (the default search_path), `pg_catalog.x` for names starting `pg_`, `pg_temp.x` for
//   relations created TEMP. Identifiers keep the case the parser gives them (`"Cards"` →
//   `public.Cards`); one containing `.` or `"` is double-quoted. DROP SCHEMA s and GRANT … ON
//   ALL TABLES IN SCHEMA s report `s.*`. CTE names are never reported as tables.
// - Writes and reads are separate operations, so that each table is decided under the kind
//   of access it gets: `INSERT INTO a SELECT … FROM b` → insert [public.a] + select
//   [public.b]; UPDATE/DELETE/MERGE likewise for tables read in FROM/USING/subqueries, and
//   RETURNING adds the target to that select. INSERT … ON CONFLICT DO UPDATE adds an update
//   operation on the target. SELECT … INTO, CREATE TABLE AS, CREATE [MATERIALIZED] VIEW →
//   create [new relation] + select [tables of the query]. A SELECT's operation lists every
//   table it reads (joins, subqueries, CTE bodies). Suggested matching: an allow rule's
//   `tables` should cover EVERY table of an operation, a deny rule matches if ANY does.
// - Data-modifying statements nested anywhere (WITH d AS (DELETE …), COPY (DELETE … RETURNING)
//   TO) yield their own operations after the statement's own.
// - `qualifiers`: `delete-without-where` / `update-without-where` exactly when the statement
//   has no WHERE clause at all (`WHERE true` is a WHERE: the agent wrote the condition down).
// - `functions`: every function called anywhere in the statement, as written
//   (`pg_read_file`, `pg_catalog.pg_read_file`), on the statement's own operation. COPY …
//   PROGRAM reports the pseudo-function `copy-program`, COPY to/from a server file
//   `copy-file`. `isDangerousFunction(name)` tells which of them reach outside the tables
//   (file system, dblink*, lo_import/lo_export, SQL run from a string, set_config, …).
// - `unlisted`: the functions an allow rule must name, schema-qualified as the server
//   resolves them (`pg_catalog.setval`, `public.purge`): every one but PostgreSQL 15's
//   read-only built-ins (functions.ts, from the generated pg15-catalog.ts), and operators
//   that are not pg_catalog's read-only ones (`public.operator(===)`). `exactOnly`: those
//   only a rule naming them without `*` opens (SQL run from text, set_config, COPY on the
//   server). `reportedFunctionClass(name)` says why, for explanations.
// - `lock`: SELECT … FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE (anywhere in the statement)
//   adds a lock operation over the tables of the locking SELECT; LOCK TABLE is `lock`.
//   LISTEN/UNLISTEN → listen; NOTIFY → notify, and pg_notify(…) adds a notify operation.
// - `DO` → do, `CALL` → call (its procedure in functions), `EXECUTE name` → other (the
//   prepared text lives in the session). `PREPARE p AS stmt` and `DECLARE c CURSOR FOR stmt`
//   are classified as stmt. `EXPLAIN ANALYZE stmt` runs stmt and is classified as stmt; plain
//   EXPLAIN is `select` over the tables stmt touches. FETCH/MOVE/CLOSE → select (no tables);
//   SET/RESET/DISCARD/DEALLOCATE/SET CONSTRAINTS → set; unknown utility statements → other.
// - SQL that does not parse: { ok: false, sqlstate '42601', the parser's message, position }
//   where position is 1-based in characters, as PostgreSQL's ErrorResponse 'P' field.
//   A NUL byte in the text → 08P01; nesting beyond the parser's stack → 54001.
// - Only whitespace/comments → ok with no operations (the server answers EmptyQueryResponse).
// - The parser reads text as PostgreSQL does with standard_conforming_strings = on and UTF-8,
//   and reports unqualified names for the default search_path. A SET that leaves any of these
//   (`SET standard_conforming_strings = off`, `SET NAMES 'SJIS'`, `SET search_path = secret`)
//   also reports the function `set_config` (its equivalent), so the dangerous-function guard
//   denies it; the proxy must check startup parameters and ParameterStatus with
//   sessionParameterProblem (session.ts) and stop classifying a session that left them.
//
// For the audit log: maskSqlText(sql, { keep, cardFields }) masks literal PANs and stars the
// literals given to card-data columns (cvv, pin, track data…), see mask-sql.ts.
//
// Results are cached by the EXACT text (plus connection), never by a normalised form, and
// are frozen: callers must not mutate them.

import type { PgRequest } from '../policy/types.js';
import { LruCache, type LruStats } from './cache.js';
import { StatementClassifier, type Operation } from './classify.js';
import { parseSql, TOO_DEEP } from './parser.js';

export { loadSqlParser, sqlParserLoaded } from './parser.js';
export { isDangerousFunction, COPY_PROGRAM, COPY_FILE } from './dangerous.js';
export { maskSqlText, type SqlMaskOptions } from './mask-sql.js';
export { reportedFunctionClass, FUNCTION_CLASS_REASONS, needsRule, needsExactRule, type FunctionClass } from './functions.js';
export { CATALOG_MAJOR } from './pg15-catalog.js';
export { sessionParameterProblem } from './session.js';
export type { LruStats } from './cache.js';

export interface SqlStatement {
  /** The statement's own text as the parser delimits it (without the separating `;`). */
  readonly text: string;
  /** Its operations, its own first. */
  readonly operations: readonly PgRequest[];
  /**
   * `PREPARE name AS …`: the name it defines (its operations are the inner statement's).
   * `EXECUTE name`: the name it runs (classified `other`). A proxy that remembers what each
   * PREPARE of the session classified to may decide an EXECUTE by that instead.
   */
  readonly prepares?: string;
  readonly executes?: string;
}

export interface SqlClassified {
  readonly ok: true;
  /** Every operation of every statement, in order. */
  readonly operations: readonly PgRequest[];
  readonly statements: readonly SqlStatement[];
  readonly statementCount: number;
}

export interface SqlRejected {
  readonly ok: false;
  /** `42601` syntax error, `08P01` NUL in text, `54001` too deeply nested, `XX000` parser failure. */
  readonly sqlstate: string;
  readonly message: string;
  /** 1-based character position for ErrorResponse 'P', when the parser gave one. */
  readonly position?: number;
}

export type SqlClassification = SqlClassified | SqlRejected;

export interface SqlClassifierOptions {
  /** Most cached texts; default 10 000. */
  maxEntries?: number;
  /** Budget for cached texts and results (estimated bytes); default 32 MiB. */
  maxBytes?: number;
  /** Longer texts (bulk INSERTs full of literals) are classified but not cached; default 64 KiB. */
  maxCachedLength?: number;
  /** Schema reported for unqualified names; default `public`. */
  defaultSchema?: string;
}

export class SqlClassifier {
  private readonly cache: LruCache<SqlClassification>;
  private readonly statements: StatementClassifier;
  private readonly maxCachedLength: number;

  constructor(opts: SqlClassifierOptions = {}) {
    this.cache = new LruCache({ maxEntries: opts.maxEntries ?? 10_000, maxBytes: opts.maxBytes ?? 32 * 1024 * 1024 });
    this.statements = new StatementClassifier({ defaultSchema: opts.defaultSchema ?? 'public' });
    this.maxCachedLength = opts.maxCachedLength ?? 64 * 1024;
  }

  classify(sql: string, connection: string): SqlClassification {
    if (connection.includes('\0')) throw new Error('connection name must not contain NUL');
    // NUL separates the two parts; SQL containing NUL is rejected before any lookup, so no
    // two different (connection, sql) pairs can share a key.
    const cacheable = sql.length <= this.maxCachedLength && !sql.includes('\0');
    const key = `${connection}\0${sql}`;
    if (cacheable) {
      const hit = this.cache.get(key);
      if (hit) return hit;
    }
    const result = this.compute(sql, connection);
    if (cacheable) this.cache.set(key, result, estimateBytes(result));
    return result;
  }

  stats(): LruStats {
    return this.cache.stats();
  }

  clearCache(): void {
    this.cache.clear();
  }

  private compute(sql: string, connection: string): SqlClassification {
    const parsed = parseSql(sql);
    if (!parsed.ok) {
      const { sqlstate, message, position } = parsed;
      return Object.freeze(position === undefined ? { ok: false, sqlstate, message } : { ok: false, sqlstate, message, position });
    }
    const texts = statementTexts(sql, parsed.statements);
    const statements: SqlStatement[] = [];
    const all: PgRequest[] = [];
    try {
      for (let i = 0; i < parsed.statements.length; i++) {
        const ops = this.statements.classify(parsed.statements[i].stmt).map((o) => request(o, connection));
        all.push(...ops);
        const st: { text: string; operations: readonly PgRequest[]; prepares?: string; executes?: string } = { text: texts[i], operations: Object.freeze(ops) };
        const node = parsed.statements[i].stmt;
        const prep = node.PrepareStmt as { name?: unknown } | undefined;
        const exec = node.ExecuteStmt as { name?: unknown } | undefined;
        if (typeof prep?.name === 'string') st.prepares = prep.name;
        if (typeof exec?.name === 'string') st.executes = exec.name;
        statements.push(Object.freeze(st));
      }
    } catch (err) {
      // Recursion deeper than the JS stack: refuse rather than decide on a partial walk.
      if (err instanceof RangeError) return Object.freeze({ ok: false, sqlstate: '54001', message: TOO_DEEP });
      throw err;
    }
    return Object.freeze({ ok: true, operations: Object.freeze(all), statements: Object.freeze(statements), statementCount: statements.length });
  }
}

function request(o: Operation, connection: string): PgRequest {
  return Object.freeze({
    protocol: 'postgres',
    connection,
    statement: o.statement,
    qualifiers: Object.freeze(o.qualifiers) as PgRequest['qualifiers'],
    tables: Object.freeze(o.tables) as string[],
    functions: Object.freeze(o.functions) as string[],
    unlisted: Object.freeze(o.unlisted) as string[],
    exactOnly: Object.freeze(o.exactOnly) as string[],
  });
}

/** Statement locations are UTF-8 byte offsets; slice on bytes only when the text is not ASCII. */
function statementTexts(sql: string, stmts: Array<{ stmtLocation: number; stmtLen: number }>): string[] {
  const ascii = Buffer.byteLength(sql) === sql.length;
  const buf = ascii ? undefined : Buffer.from(sql);
  const total = ascii ? sql.length : buf!.length;
  return stmts.map(({ stmtLocation: start, stmtLen: len }) => {
    const end = len > 0 ? start + len : total;
    const raw = ascii ? sql.slice(start, end) : buf!.subarray(start, end).toString();
    return raw.trim();
  });
}

function estimateBytes(r: SqlClassification): number {
  if (!r.ok) return 128 + r.message.length * 2;
  let n = 128;
  for (const s of r.statements) n += 64 + s.text.length * 2;
  for (const o of r.operations) {
    n += 160;
    for (const t of o.tables) n += 32 + t.length * 2;
    for (const f of o.functions) n += 32 + f.length * 2;
    n += 16 * (o.unlisted?.length ?? 0) + 16 * (o.exactOnly?.length ?? 0);
  }
  return n;
}

let shared: SqlClassifier | undefined;

/** Classifies with the process-wide classifier (one cache for every connection). */
export function classifySql(sql: string, connection: string): SqlClassification {
  shared ??= new SqlClassifier();
  return shared.classify(sql, connection);
}

/** The process-wide classifier, for its cache statistics. */
export function sharedSqlClassifier(): SqlClassifier {
  shared ??= new SqlClassifier();
  return shared;
}
