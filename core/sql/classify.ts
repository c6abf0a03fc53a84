// Parse tree → policy operations. See index.ts for the semantics the policy relies on.
//
// The walk is generic on purpose: every object in the tree is visited, so a table or a
// function hidden in a place this file never names (a new node type in a later PostgreSQL)
// is still reported. Only the statement kinds and the few "target" fields are specific.

import type { StatementKind, StatementQualifier } from '../policy/types.js';
import type { AstNode } from './parser.js';
import { COPY_FILE, COPY_PROGRAM } from './dangerous.js';
import { sessionParameterProblem } from './session.js';
import { functionName, operatorName, qualifiedFromParts, resolvedName, tableName, type NameOptions, type RangeVarLike } from './names.js';
import { functionClass, isBuiltinFunctionName, needsExactRule, needsRule, operatorIsReadOnly, type FunctionClass } from './functions.js';

/** What a statement does, without the connection (added by the caller). */
export interface Operation {
  statement: StatementKind;
  qualifiers: StatementQualifier[];
  tables: string[];
  functions: string[];
  /** The functions (and operators) an allow rule must name, see functions.ts. */
  unlisted: string[];
  /** Of `unlisted`, those only a rule naming them without `*` opens. */
  exactOnly: string[];
}

/** The functions a part of a statement calls, with the ones a rule must name. */
interface Calls {
  readonly functions: Set<string>;
  readonly unlisted: Set<string>;
  readonly exactOnly: Set<string>;
}

const NO_CALLS: Calls = { functions: new Set(), unlisted: new Set(), exactOnly: new Set() };

function newCalls(): Calls {
  return { functions: new Set(), unlisted: new Set(), exactOnly: new Set() };
}

/** `name` as written goes to functions; `resolved` (schema-qualified) to the lists rules must cover. */
function addCall(calls: Calls, name: string, c: FunctionClass, resolved = name): void {
  calls.functions.add(name);
  if (needsRule(c)) calls.unlisted.add(resolved);
  if (needsExactRule(c)) calls.exactOnly.add(resolved);
}

function mergeCalls(into: Calls, from: Calls): void {
  for (const f of from.functions) into.functions.add(f);
  for (const f of from.unlisted) into.unlisted.add(f);
  for (const f of from.exactOnly) into.exactOnly.add(f);
}

/** CTE names visible at a point of the tree (lexical scope, innermost first). */
interface Scope {
  names: ReadonlySet<string>;
  parent: Scope | undefined;
}

function inScope(scope: Scope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

/** What a walk over part of a statement found. */
class Findings implements Calls {
  readonly tables = new Set<string>();
  readonly functions = new Set<string>();
  readonly unlisted = new Set<string>();
  readonly exactOnly = new Set<string>();
  /**
   * Operations the part implies beside its own: data-modifying statements nested in it
   * (CTEs, COPY (DELETE …)), row locks (SELECT … FOR UPDATE), notifications (pg_notify).
   */
  readonly nested: Operation[] = [];
}

/** SELECT … FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE locks the rows it reads. */
function hasLockingClause(fields: AstNode): boolean {
  return Array.isArray(fields.lockingClause) && fields.lockingClause.length > 0;
}

/** A_Expr kinds whose name is an operator the server resolves (BETWEEN's name is a keyword: its operators are <= and >=). */
const OPERATOR_EXPR_KINDS = new Set(['AEXPR_OP', 'AEXPR_OP_ANY', 'AEXPR_OP_ALL', 'AEXPR_DISTINCT', 'AEXPR_NOT_DISTINCT', 'AEXPR_NULLIF', 'AEXPR_IN', 'AEXPR_LIKE', 'AEXPR_ILIKE', 'AEXPR_SIMILAR']);

const DML = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

const TABLE_LIKE_DROPS = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE', 'OBJECT_INDEX',
]);

function isObj(v: unknown): v is AstNode {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isRangeVar(o: AstNode): boolean {
  return typeof o.relname === 'string' && typeof o.relpersistence === 'string';
}

function isFuncCall(o: AstNode): boolean {
  return Array.isArray(o.funcname) && typeof o.funcformat === 'string';
}

/** `[{String:{sval:'a'}}, …]` → `['a', …]`. */
function strings(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  const out: string[] = [];
  for (const item of list) {
    const s = isObj(item) && isObj(item.String) ? item.String.sval : undefined;
    if (typeof s === 'string') out.push(s);
  }
  return out;
}

/** The single `{ TypeName: fields }` pair of a wrapped node. */
function unwrap(node: unknown): [string, AstNode] | undefined {
  if (!isObj(node)) return undefined;
  const keys = Object.keys(node);
  if (keys.length !== 1) return undefined;
  const fields = node[keys[0]];
  return isObj(fields) ? [keys[0], fields] : undefined;
}

function op(statement: StatementKind, tables: Iterable<string> = [], calls: Calls = NO_CALLS, qualifiers: StatementQualifier[] = []): Operation {
  return { statement, qualifiers, tables: [...tables], functions: [...calls.functions], unlisted: [...calls.unlisted], exactOnly: [...calls.exactOnly] };
}

/** Kinds decided by the node type alone; anything not here and not handled below is `other`. */
function kindOf(type: string, fields: AstNode): StatementKind {
  switch (type) {
    case 'TransactionStmt': return 'transaction';
    case 'VariableSetStmt': case 'ConstraintsSetStmt': case 'DiscardStmt': case 'DeallocateStmt': return 'set';
    case 'VariableShowStmt': return 'show';
    case 'TruncateStmt': return 'truncate';
    case 'CallStmt': return 'call';
    case 'DoStmt': return 'do';
    case 'LockStmt': return 'lock';
    case 'NotifyStmt': return 'notify';
    case 'ListenStmt': case 'UnlistenStmt': return 'listen';
    // Cursor use: the decision was made when the cursor was declared (psql's FETCH_COUNT mode).
    case 'FetchStmt': case 'ClosePortalStmt': return 'select';
    case 'GrantStmt': case 'GrantRoleStmt': return fields.is_grant === true ? 'grant' : 'revoke';
    case 'AlterDefaultPrivilegesStmt': return isObj(fields.action) && fields.action.is_grant === true ? 'grant' : 'revoke';
    case 'IndexStmt': case 'ViewStmt': case 'RuleStmt': case 'DefineStmt': case 'CompositeTypeStmt':
    case 'ImportForeignSchemaStmt':
      return 'create';
    case 'RenameStmt': case 'CommentStmt': case 'SecLabelStmt': case 'ReassignOwnedStmt': return 'alter';
  }
  if (type.startsWith('Create')) return 'create';
  if (type.startsWith('Alter')) return 'alter';
  if (type.startsWith('Drop')) return 'drop';
  return 'other';
}

/**
 * EXPLAIN runs its statement only with ANALYZE. PostgreSQL accepts true/false/on/off/1/0 as
 * the option's value; anything but an explicit false counts as on (the stricter reading).
 */
function explainAnalyzes(fields: AstNode): boolean {
  if (!Array.isArray(fields.options)) return false;
  let analyze = false;
  for (const o of fields.options) {
    const d = isObj(o) && isObj(o.DefElem) ? o.DefElem : undefined;
    if (!d || d.defname !== 'analyze') continue;
    const arg = unwrap(d.arg);
    if (!arg) {
      analyze = true;
      continue;
    }
    const [t, v] = arg;
    const off =
      (t === 'String' && typeof v.sval === 'string' && ['false', 'off'].includes(v.sval.toLowerCase())) ||
      (t === 'Integer' && (v.ival ?? 0) === 0) ||
      (t === 'Boolean' && v.boolval !== true);
    // The last occurrence wins, as in PostgreSQL.
    analyze = !off;
  }
  return analyze;
}

/** The value a SET assigns, as PostgreSQL would show it (`a, b` for lists). */
function setValue(args: unknown): string {
  if (!Array.isArray(args)) return '';
  const parts: string[] = [];
  for (const a of args) {
    const c = isObj(a) && isObj(a.A_Const) ? a.A_Const : undefined;
    if (!c) continue;
    const v = isObj(c.sval) ? c.sval.sval : isObj(c.ival) ? (c.ival.ival ?? 0) : isObj(c.boolval) ? (c.boolval.boolval ?? false) : isObj(c.fval) ? c.fval.fval : undefined;
    parts.push(String(v ?? ''));
  }
  return parts.join(', ');
}

export class StatementClassifier {
  constructor(private readonly names: NameOptions) {}

  /** Operations of one top-level (or nested) statement: its own operation first. */
  classify(node: AstNode, scope?: Scope): Operation[] {
    const u = unwrap(node);
    if (!u) return [op('other')];
    const [type, fields] = u;
    switch (type) {
      case 'SelectStmt': return this.select(fields, scope);
      case 'InsertStmt': case 'UpdateStmt': case 'DeleteStmt': case 'MergeStmt': return this.dml(type, fields, scope);
      case 'CopyStmt': return this.copy(fields, scope);
      case 'ExplainStmt': return this.explain(fields, scope);
      case 'PrepareStmt': case 'DeclareCursorStmt': return isObj(fields.query) ? this.classify(fields.query, scope) : [op('other')];
      case 'CreateTableAsStmt': return this.createAs(fields, isObj(fields.into) ? fields.into.rel : undefined, scope);
      case 'ViewStmt': return this.createAs(fields, fields.view, scope);
      case 'ExecuteStmt': {
        // The prepared statement's text is in the session, not here: unresolvable by design.
        const f = this.walkAll(fields, scope);
        return [op('other', f.tables, f), ...f.nested];
      }
      default: return this.generic(type, fields, scope);
    }
  }

  private select(fields: AstNode, scope: Scope | undefined): Operation[] {
    const into = isObj(fields.intoClause) && isObj(fields.intoClause.rel) ? fields.intoClause.rel : undefined;
    const f = this.walkAll(fields, scope, into ? new Set(['intoClause']) : undefined);
    const lock = hasLockingClause(fields) ? [op('lock', f.tables)] : [];
    if (into) {
      // SELECT … INTO creates a table from what it reads.
      return [op('create', [this.table(into)], f), op('select', f.tables), ...lock, ...f.nested];
    }
    return [op('select', f.tables, f), ...lock, ...f.nested];
  }

  private dml(type: string, fields: AstNode, scope: Scope | undefined): Operation[] {
    const kind: StatementKind = type === 'InsertStmt' ? 'insert' : type === 'UpdateStmt' ? 'update' : type === 'DeleteStmt' ? 'delete' : 'merge';
    const target = isObj(fields.relation) ? this.table(fields.relation) : undefined;
    const qualifiers: StatementQualifier[] = [];
    // Only a missing WHERE counts: `WHERE true` is a deliberate choice the agent wrote down.
    if (kind === 'delete' && fields.whereClause === undefined) qualifiers.push('delete-without-where');
    if (kind === 'update' && fields.whereClause === undefined) qualifiers.push('update-without-where');
    // The target is written, never a CTE (PostgreSQL resolves DML targets to real tables).
    const f = this.walkAll(fields, scope, new Set(['relation']));
    const reads = new Set(f.tables);
    // RETURNING hands the target's rows back: that is a read of it.
    if (target && isObj(fields.returningClause)) reads.add(target);
    const ops = [op(kind, target ? [target] : [], f, qualifiers)];
    if (reads.size > 0) ops.push(op('select', reads));
    if (kind === 'insert' && isObj(fields.onConflictClause) && fields.onConflictClause.action === 'ONCONFLICT_UPDATE' && target) {
      ops.push(op('update', [target]));
    }
    ops.push(...f.nested);
    return ops;
  }

  private copy(fields: AstNode, scope: Scope | undefined): Operation[] {
    const kind: StatementKind = fields.is_from === true ? 'copy-from' : 'copy-to';
    const f = this.walkAll(fields, scope, new Set(['relation']));
    const tables = new Set<string>();
    if (isObj(fields.relation)) tables.add(this.table(fields.relation));
    // COPY (SELECT …) TO reads what its query reads.
    for (const t of f.tables) tables.add(t);
    if (fields.is_program === true) addCall(f, COPY_PROGRAM, 'copy-server');
    else if (typeof fields.filename === 'string') addCall(f, COPY_FILE, 'copy-server');
    return [op(kind, tables, f), ...f.nested];
  }

  private explain(fields: AstNode, scope: Scope | undefined): Operation[] {
    if (!isObj(fields.query)) return [op('other')];
    const inner = this.classify(fields.query, scope);
    if (explainAnalyzes(fields)) return inner;
    // Plain EXPLAIN plans but does not run: it reveals only what it plans over.
    const tables = new Set<string>();
    const calls = newCalls();
    for (const o of inner) {
      for (const t of o.tables) tables.add(t);
      mergeCalls(calls, { functions: new Set(o.functions), unlisted: new Set(o.unlisted), exactOnly: new Set(o.exactOnly) });
    }
    return [op('select', tables, calls)];
  }

  /** CREATE TABLE AS / CREATE MATERIALIZED VIEW / CREATE VIEW: creates one relation from a query. */
  private createAs(fields: AstNode, rel: unknown, scope: Scope | undefined): Operation[] {
    const f = this.walkAll(fields, scope, new Set(['into', 'view']));
    const ops = [op('create', isObj(rel) ? [this.table(rel)] : [], f)];
    if (f.tables.size > 0) ops.push(op('select', f.tables));
    ops.push(...f.nested);
    return ops;
  }

  private generic(type: string, fields: AstNode, scope: Scope | undefined): Operation[] {
    const kind = kindOf(type, fields);
    const f = this.walkAll(fields, scope);
    const tables = new Set(f.tables);
    // `SET x = v` is `set_config('x', v, false)`. When x changes how the server reads later
    // statement text or resolves unqualified names (standard_conforming_strings off, a
    // non-UTF-8 client_encoding, another search_path), the classifier could no longer follow
    // the session: report it as the dangerous function it is equivalent to.
    if (type === 'VariableSetStmt' && fields.kind === 'VAR_SET_VALUE' && typeof fields.name === 'string') {
      if (sessionParameterProblem(fields.name, setValue(fields.args))) addCall(f, 'set_config', 'settings', 'pg_catalog.set_config');
    }
    if (type === 'DropStmt' && Array.isArray(fields.objects)) {
      const removeType = String(fields.removeType);
      for (const o of fields.objects) {
        if (TABLE_LIKE_DROPS.has(removeType) && isObj(o) && isObj(o.List)) {
          const name = qualifiedFromParts(strings(o.List.items), this.names);
          if (name) tables.add(name);
        } else if (removeType === 'OBJECT_SCHEMA') {
          for (const s of strings([o])) tables.add(`${s}.*`);
        }
      }
    }
    if (type === 'GrantStmt' && fields.targtype === 'ACL_TARGET_ALL_IN_SCHEMA') {
      for (const s of strings(fields.objects)) tables.add(`${s}.*`);
    }
    return [op(kind, tables, f), ...f.nested];
  }

  private table(rv: AstNode): string {
    return tableName(rv as RangeVarLike, this.names);
  }

  /** Walks every field of a statement except `skip`, honouring its WITH clause. */
  private walkAll(fields: AstNode, scope: Scope | undefined, skip?: ReadonlySet<string>): Findings {
    const found = new Findings();
    this.walkFields(fields, found, scope, skip);
    return found;
  }

  private walkFields(fields: AstNode, found: Findings, scope: Scope | undefined, skip?: ReadonlySet<string>): void {
    let inner = scope;
    const wc = fields.withClause;
    if (isObj(wc) && Array.isArray(wc.ctes)) {
      const ctes: Array<{ name: string; query: unknown }> = [];
      for (const c of wc.ctes) {
        const cte = isObj(c) && isObj(c.CommonTableExpr) ? c.CommonTableExpr : undefined;
        if (cte && typeof cte.ctename === 'string') ctes.push({ name: cte.ctename, query: cte.ctequery });
      }
      const all = new Set(ctes.map((c) => c.name));
      // Without RECURSIVE a CTE sees only the CTEs before it: `WITH cards AS (SELECT * FROM cards)`
      // reads the real table, and must be reported as such.
      const visible = new Set<string>();
      for (const c of ctes) {
        const cteScope: Scope = { names: wc.recursive === true ? all : new Set(visible), parent: scope };
        this.walkNode(c.query, found, cteScope);
        visible.add(c.name);
      }
      inner = { names: all, parent: scope };
    }
    for (const key of Object.keys(fields)) {
      // FOR UPDATE OF x names x as the FROM clause does (often by alias); PostgreSQL refuses
      // a name that is not in FROM, so the tables were found there already.
      if (key === 'withClause' || key === 'lockingClause' || skip?.has(key)) continue;
      this.walkNode(fields[key], found, inner);
    }
  }

  private walkNode(v: unknown, found: Findings, scope: Scope | undefined): void {
    if (Array.isArray(v)) {
      for (const item of v) this.walkNode(item, found, scope);
      return;
    }
    if (!isObj(v)) return;
    const u = unwrap(v);
    if (u && DML.has(u[0])) {
      // A data-modifying statement inside another (CTE, COPY (…) TO, rule action): its own operations.
      found.nested.push(...this.classify(v, scope));
      return;
    }
    if (u && u[0] === 'SelectStmt' && hasLockingClause(u[1])) {
      // A locking subquery: its rows are locked, whatever the outer statement does.
      const inner = new Findings();
      this.walkObject(u[1], inner, scope);
      for (const t of inner.tables) found.tables.add(t);
      mergeCalls(found, inner);
      found.nested.push(op('lock', inner.tables), ...inner.nested);
      return;
    }
    if (u && (u[0] === 'A_Expr' || u[0] === 'SubLink')) {
      // An operator runs its function: `a === b` with a user-defined === is a call of it.
      // Checked here, where the node type is known, not on every object of the tree.
      const fields = u[1];
      const opName = u[0] === 'A_Expr' ? (typeof fields.kind === 'string' && OPERATOR_EXPR_KINDS.has(fields.kind) ? fields.name : undefined) : fields.operName;
      if (opName !== undefined) {
        const parts = strings(opName);
        if (parts.length > 0 && !operatorIsReadOnly(parts)) addCall(found, operatorName(parts), 'unknown-operator', resolvedName(parts, false, this.names, true));
      }
      this.walkObject(fields, found, scope);
      return;
    }
    if (u && (u[0] === 'SelectStmt' || u[0] === 'RangeVar' || u[0] === 'FuncCall')) {
      this.walkObject(u[1], found, scope);
      return;
    }
    this.walkObject(v, found, scope);
  }

  private walkObject(o: AstNode, found: Findings, scope: Scope | undefined): void {
    if (isRangeVar(o)) {
      const rel = o.relname as string;
      const qualified = typeof o.schemaname === 'string' && o.schemaname !== '';
      if (qualified || !inScope(scope, rel)) found.tables.add(this.table(o));
      return;
    }
    if (isFuncCall(o)) {
      const parts = strings(o.funcname);
      const name = functionName(parts);
      const c = functionClass(parts);
      addCall(found, name, c, needsRule(c) ? resolvedName(parts, isBuiltinFunctionName(parts[parts.length - 1]), this.names) : name);
      // pg_notify(channel, payload) is NOTIFY: the same operation, whichever way it is written.
      if (c === 'notify') found.nested.push(op('notify', [], { functions: new Set([name]), unlisted: new Set(), exactOnly: new Set() }));
    }
    this.walkFields(o, found, scope);
  }
}
