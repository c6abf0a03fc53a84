// Rules compiled into predicates. A rule matches a request when every field it names
// matches; the fields it leaves out do not constrain it. Set-valued facts of a request
// (the tables and functions of a statement, the namespaces and names a collection
// request may touch) are matched by the direction of the rule's action, so that no
// allow can open what a deny or approve closes:
//   - deny and approve rules match when ANY of them matches (a join with one denied
//     table is denied; a list across all namespaces touches the denied one);
//   - allow rules match only when EVERY one of them is covered (an allow on public.*
//     does not open a join with private.keys; only `*` covers "all namespaces").
// See core/policy/README.md for the full semantics.

import type { Identity } from '../identity.js';
import type { Action, ApprovalSpec, KubeRequest, PgRequest, PolicyRequest } from './types.js';
import type { RuleDoc, ApprovalDoc } from './schema.js';
import { compileGlobs } from './glob.js';
import type { Matcher } from './glob.js';

/**
 * `user`: the policy's own rules. `guard`: built-in rules that take part in
 * most-restrictive-wins beside the user's (replace one by writing a rule of the same
 * name). `fallback`: built-in rules consulted only when no user or guard rule matched,
 * before `spec.default`.
 */
export type RuleTier = 'user' | 'guard' | 'fallback';

export interface CompiledRule {
  readonly name: string;
  readonly action: Action;
  readonly tier: RuleTier;
  readonly description?: string;
  readonly approval?: ApprovalSpec;
  readonly doc: RuleDoc;
  /** `kubernetes` or `postgres` when the rule has that block; undefined matches both. */
  readonly protocol?: 'kubernetes' | 'postgres';
  /** The subjects and groups conditions alone. */
  matchesIdentity(identity: Identity): boolean;
  /** The protocol block's conditions alone (the protocol itself is assumed checked). */
  matchesRequest(request: PolicyRequest): boolean;
  matches(identity: Identity, request: PolicyRequest): boolean;
}

type Pred = (request: PolicyRequest) => boolean;
type IdPred = (identity: Identity) => boolean;

/** Unqualified names are resolved the way PostgreSQL's default search_path would put new objects. */
export const DEFAULT_SCHEMA = 'public';

export const APPROVAL_DEFAULTS = { mode: 'wait', scope: 'once', waitSeconds: 120, windowMinutes: 15, minApprovals: 1 } as const;

export function approvalSpec(doc: ApprovalDoc | undefined): ApprovalSpec {
  const scope = doc?.scope ?? APPROVAL_DEFAULTS.scope;
  return {
    mode: doc?.mode ?? APPROVAL_DEFAULTS.mode,
    scope,
    waitSeconds: doc?.waitSeconds ?? APPROVAL_DEFAULTS.waitSeconds,
    windowMinutes: scope === 'window' ? (doc?.windowMinutes ?? APPROVAL_DEFAULTS.windowMinutes) : 0,
    approverGroups: doc?.approverGroups ?? [],
    minApprovals: doc?.minApprovals ?? APPROVAL_DEFAULTS.minApprovals,
  };
}

export function compileRule(doc: RuleDoc, tier: RuleTier): CompiledRule {
  const any = doc.action !== 'allow';
  const preds: Pred[] = [];
  const idPreds: IdPred[] = [];
  const protocol = doc.kubernetes ? 'kubernetes' : doc.postgres ? 'postgres' : undefined;
  if (doc.subjects) {
    const m = compileGlobs(doc.subjects);
    idPreds.push((i) => m(i.subject));
  }
  if (doc.groups) {
    const m = compileGlobs(doc.groups);
    idPreds.push((i) => i.groups.some(m));
  }
  const k = doc.kubernetes;
  if (k) {
    if (k.verbs) {
      const all = k.verbs.includes('*');
      const verbs = new Set(k.verbs);
      preds.push((r) => all || verbs.has((r as KubeRequest).verb));
    }
    if (k.nonResourceURLs) {
      const m = compileGlobs(k.nonResourceURLs);
      preds.push((r) => (r as KubeRequest).nonResource && m((r as KubeRequest).path));
    }
    if (k.apiGroups || k.resources || k.namespaces || k.names) preds.push((r) => !(r as KubeRequest).nonResource);
    if (k.apiGroups) {
      const m = compileGlobs(k.apiGroups);
      preds.push((r) => m((r as KubeRequest).apiGroup));
    }
    if (k.resources) {
      const m = compileResources(k.resources);
      preds.push((r) => m(r as KubeRequest));
    }
    if (k.namespaces) {
      const m = compileGlobs(k.namespaces);
      const star = k.namespaces.includes('*');
      preds.push((r) => {
        const q = r as KubeRequest;
        if (q.namespace !== '') return m(q.namespace);
        // A named object outside any namespace is cluster-scoped (namespaced objects are
        // always addressed through their namespace): it lies in none of the namespaces.
        if (q.name !== '') return false;
        // A collection without a namespace spans every namespace.
        return any || star;
      });
    }
    if (k.names) {
      const m = compileGlobs(k.names);
      const star = k.names.includes('*');
      // Collections and creates carry no name: they may touch any name.
      preds.push((r) => ((r as KubeRequest).name !== '' ? m((r as KubeRequest).name) : any || star));
    }
  }
  const p = doc.postgres;
  if (p) {
    if (p.connections) {
      const m = compileGlobs(p.connections);
      preds.push((r) => m((r as PgRequest).connection));
    }
    if (p.statements) {
      const names = new Set(p.statements);
      preds.push((r) => {
        const q = r as PgRequest;
        if (names.has(q.statement)) return true;
        for (const x of q.qualifiers) if (names.has(x)) return true;
        return false;
      });
    }
    if (p.tables) {
      const m = compileQualified(p.tables, any);
      preds.push((r) => m((r as PgRequest).tables));
    }
    if (p.functions && any) {
      const m = compileQualified(p.functions, true);
      preds.push((r) => m((r as PgRequest).functions));
    }
  }
  if (!any && protocol !== 'kubernetes') {
    // An allow opens an operation only if it names every function the proxy does not know
    // as a read-only built-in; a rule naming none opens only operations that call none.
    const named = p?.functions ? compileQualifiedOne(p.functions, false) : undefined;
    const exactPatterns = p?.functions?.filter((x) => !x.includes('*'));
    const exact = exactPatterns?.length ? compileQualifiedOne(exactPatterns, false) : undefined;
    preds.push((r) => (r.protocol === 'postgres' ? coversFunctions(r, named, exact) : true));
  }
  const all = (list: ((x: never) => boolean)[]) => {
    const n = list.length;
    if (n === 0) return () => true;
    if (n === 1) return list[0];
    return (x: never) => {
      for (let j = 0; j < n; j++) if (!list[j](x)) return false;
      return true;
    };
  };
  const matchesIdentity = all(idPreds) as (i: Identity) => boolean;
  const matchesRequest = all(preds) as (r: PolicyRequest) => boolean;
  const matches = (identity: Identity, request: PolicyRequest) =>
    (protocol === undefined || request.protocol === protocol) && matchesIdentity(identity) && matchesRequest(request);
  return {
    name: doc.name,
    action: doc.action,
    tier,
    description: doc.description,
    // Shared by every decision this rule makes: frozen so no consumer can alter the next one.
    approval: doc.action === 'approve' ? Object.freeze({ ...approvalSpec(doc.approval), approverGroups: Object.freeze([...(doc.approval?.approverGroups ?? [])]) as string[] }) : undefined,
    doc,
    protocol,
    matchesIdentity,
    matchesRequest,
    matches,
  };
}

// RBAC's resource semantics: `pods` is the resource alone, `pods/exec` one subresource,
// `pods/*` every subresource of pods, `*/scale` that subresource of every resource, `*`
// every resource and subresource.
function compileResources(patterns: string[]): (r: KubeRequest) => boolean {
  if (patterns.includes('*')) return () => true;
  const parts = patterns.map((p) => {
    const slash = p.indexOf('/');
    const res = slash < 0 ? p : p.slice(0, slash);
    const sub = slash < 0 ? undefined : p.slice(slash + 1);
    return { res: compileGlobs([res]), sub: sub === undefined ? undefined : compileGlobs([sub]) };
  });
  return (r) => {
    for (const p of parts) {
      if (!p.res(r.resource)) continue;
      if (p.sub === undefined ? r.subresource === '' : r.subresource !== '' && p.sub(r.subresource)) return true;
    }
    return false;
  };
}

/**
 * `[schema, name]` of a (possibly quoted) dotted name: the name is the last part and the
 * schema the one before it, so a catalog prefix (`db.pg_catalog.pg_read_file`, which
 * PostgreSQL accepts for the current database) cannot hide a name. Dots inside double
 * quotes (`"a.b".t`, as core/sql quotes such identifiers) do not separate. An
 * unqualified name (or pattern) has no schema.
 */
export function splitQualified(name: string): [string | undefined, string] {
  if (!name.includes('"')) {
    const last = name.lastIndexOf('.');
    if (last < 0) return [undefined, name];
    const prev = name.lastIndexOf('.', last - 1);
    return [name.slice(prev + 1, last), name.slice(last + 1)];
  }
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === '"') {
      if (quoted && name[i + 1] === '"') {
        cur += '""';
        i++;
        continue;
      }
      quoted = !quoted;
      cur += c;
    } else if (c === '.' && !quoted) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts.length === 1 ? [undefined, parts[0]] : [parts[parts.length - 2], parts[parts.length - 1]];
}

/** Whether an allow rule's function patterns name every function the operation needs named. */
function coversFunctions(r: PgRequest, named: ((n: string) => boolean) | undefined, exact: ((n: string) => boolean) | undefined): boolean {
  // Requests not built by core/sql carry no classes: every function counts, by exact name.
  const need = r.unlisted ?? r.functions;
  if (need.length === 0) return true;
  if (named === undefined) return false;
  for (let i = 0; i < need.length; i++) if (!named(need[i])) return false;
  const exactNeed = r.exactOnly ?? (r.unlisted === undefined ? r.functions : []);
  for (let i = 0; i < exactNeed.length; i++) if (exact === undefined || !exact(exactNeed[i])) return false;
  return true;
}

/** Whether an allow rule names one function, and whether by a pattern without `*` (for explanations). */
export function ruleNamesFunction(rule: CompiledRule, name: string): 'exact' | 'pattern' | undefined {
  const patterns = rule.doc.postgres?.functions;
  if (!patterns) return undefined;
  const exact = patterns.filter((x) => !x.includes('*'));
  if (exact.length && compileQualifiedOne(exact, false)(name)) return 'exact';
  return compileQualifiedOne(patterns, false)(name) ? 'pattern' : undefined;
}

/**
 * Matches the table (or function) names of one operation. A qualified request name
 * must match schema and name. An unqualified one could resolve into any schema on the
 * search_path: a deny/approve pattern matches it by name alone (whatever its schema
 * part), an allow pattern covers it only as `public.<name>`.
 */
function compileQualified(patterns: string[], any: boolean): (names: string[]) => boolean {
  const one = compileQualifiedOne(patterns, any);
  return any
    ? (names) => {
        for (let i = 0; i < names.length; i++) if (one(names[i])) return true;
        return false;
      }
    : (names) => {
        for (let i = 0; i < names.length; i++) if (!one(names[i])) return false;
        return true;
      };
}

/** One name against the patterns; `any` as for compileQualified (it decides how an unqualified name is read). */
function compileQualifiedOne(patterns: string[], any: boolean): (name: string) => boolean {
  // Patterns without a schema match the name part alone; exact qualified patterns are a
  // set lookup; the rest pair a schema glob with a name glob.
  const bare: string[] = [];
  const exact = new Set<string>();
  const pairs: { schema: Matcher; name: Matcher }[] = [];
  for (const p of patterns) {
    const [schema, name] = splitQualified(p);
    if (schema === undefined) bare.push(name);
    else if (!p.includes('*') && !p.includes('"')) exact.add(p);
    else pairs.push({ schema: compileGlobs([schema]), name: compileGlobs([name]) });
  }
  const bareMatch = bare.length ? compileGlobs(bare) : undefined;
  const exactNames = new Set([...exact].map((e) => splitQualified(e)[1]));
  const one = (n: string): boolean => {
    const q = splitCached(n);
    const name = q.name;
    if (bareMatch !== undefined && bareMatch(name)) return true;
    let schema = q.schema;
    let canonical = q.canonical;
    if (schema === undefined && !any) {
      schema = DEFAULT_SCHEMA;
      canonical = `${DEFAULT_SCHEMA}.${name}`;
    }
    if (exact.size) {
      if (canonical !== undefined ? exact.has(canonical) : exactNames.has(name)) return true;
    }
    for (const p of pairs) if (p.name(name) && (schema === undefined || p.schema(schema))) return true;
    return false;
  };
  return one;
}

// Every rule naming tables or functions splits the same few names of a request; the
// classifier's names repeat across statements, so a bounded memo pays for itself.
interface SplitName {
  schema: string | undefined;
  name: string;
  /** `schema.name` without any catalog prefix; undefined when unqualified. */
  canonical: string | undefined;
}
const splitMemo = new Map<string, SplitName>();
function splitCached(n: string): SplitName {
  let v = splitMemo.get(n);
  if (v === undefined) {
    if (splitMemo.size >= 10_000) splitMemo.clear();
    const [schema, name] = splitQualified(n);
    v = { schema, name, canonical: schema === undefined ? undefined : `${schema}.${name}` };
    splitMemo.set(n, v);
  }
  return v;
}

export type { Matcher };
