// From policy text to a compiled policy: the schema check of core/yaml/validate.ts,
// then what a schema cannot say (patterns, duplicate names, impossible combinations),
// every error with its file:line:col, then compilation with the built-in rules.

import { readFileSync } from 'node:fs';
import { loadYamlDocuments } from '../yaml/validate.js';
import type { LoadedDocument, SourceError } from '../yaml/validate.js';
import { policySchema } from './schema.js';
import type { ApprovalDoc, PolicyDoc, RuleDoc } from './schema.js';
import { globProblem } from './glob.js';
import { BUILTIN_RULES, BUILTIN_NAMES } from './builtin.js';
import { compileRule } from './rules.js';
import type { CompiledRule } from './rules.js';
import { CompiledPolicy, DEFAULT_MASKING } from './engine.js';
import { findShadowed } from './shadow.js';

export interface LoadResult {
  /** Present only when there are no errors. */
  policy?: CompiledPolicy;
  errors: SourceError[];
  warnings: SourceError[];
}

export function loadPolicyFile(file: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { errors: [{ file, line: 1, col: 1, message: `cannot read policy file: ${e.code === 'ENOENT' ? 'no such file' : e.message}` }], warnings: [] };
  }
  return parsePolicy(text, file);
}

export function parsePolicy(text: string, file: string): LoadResult {
  const docs = loadYamlDocuments<PolicyDoc>(text, file, policySchema);
  if (docs.length === 0) return { errors: [{ file, line: 1, col: 1, message: 'no policy document in file (expected apiVersion: agentgate.dev/v1, kind: Policy)' }], warnings: [] };
  const errors: SourceError[] = [];
  for (const d of docs) errors.push(...d.errors);
  const doc = docs[0];
  if (docs.length > 1) {
    const at = docs[1].positionOf([]);
    errors.push({ file, ...at, message: 'a policy file holds exactly one Policy document; merge the rules into one' });
  }
  // Semantic checks run on a structurally broken document too (defensively), so one
  // run reports every error.
  if (!doc.errors.some((e) => e.message.startsWith('invalid YAML'))) errors.push(...semanticErrors(doc, file));
  dedupe(errors);
  sortErrors(errors);
  if (errors.length) return { errors, warnings: [] };

  const spec = doc.value.spec;
  const own = spec.rules.map((r) => compileRule(r, 'user'));
  const replaced = new Set(spec.rules.map((r) => r.name));
  const builtins = BUILTIN_RULES.filter((b) => !replaced.has(b.doc.name)).map((b) => compileRule(b.doc, b.tier));
  const rules: CompiledRule[] = [...own, ...builtins];
  const policy = new CompiledPolicy({
    name: doc.value.metadata.name,
    defaultAction: spec.default ?? 'deny',
    enforcement: spec.enforcement ?? 'enforce',
    masking: {
      pan: spec.masking?.pan ?? DEFAULT_MASKING.pan,
      fields: spec.masking?.fields ?? [],
      columns: spec.masking?.columns ?? [],
      secrets: spec.masking?.secrets ?? DEFAULT_MASKING.secrets,
    },
    rules,
  });
  const warnings = findShadowed(rules).map((s) => {
    const at = doc.positionOf(['spec', 'rules', s.index, 'name']);
    return { file, ...at, message: s.message };
  });
  spec.rules.forEach((r, i) => {
    for (const field of ['tables', 'functions'] as const) {
      r.postgres?.[field]?.forEach((p, j) => {
        // PostgreSQL folds unquoted names to lower case: `public.Cards` names only "Cards".
        if (p !== p.toLowerCase() && !p.includes('"')) {
          warnings.push({
            file,
            ...doc.positionOf(['spec', 'rules', i, 'postgres', field, j]),
            message: `rule '${r.name}': postgres.${field}[${j}] '${p}' has upper-case letters; PostgreSQL folds unquoted names to lower case, so it matches only a quoted identifier of exactly that case`,
          });
        }
      });
    }
  });
  warnings.sort((a, b) => a.line - b.line || a.col - b.col);
  return { policy, errors: [], warnings };
}

/**
 * The embedded default: the built-in rules alone under `default: deny`. Used where no
 * policy is configured (and by `make demo`): discovery is allowed, everything else is
 * denied with a reason, dangerous SQL is denied, procedural SQL needs approval.
 */
export function builtinPolicy(): CompiledPolicy {
  return new CompiledPolicy({
    name: 'agentgate-builtin',
    defaultAction: 'deny',
    enforcement: 'enforce',
    masking: { ...DEFAULT_MASKING },
    rules: BUILTIN_RULES.map((b) => compileRule(b.doc, b.tier)),
  });
}

/** A policy source that never changes (tests, the embedded default). */
export class StaticPolicySource {
  constructor(private readonly policy: CompiledPolicy = builtinPolicy()) {}
  current(): CompiledPolicy {
    return this.policy;
  }
}

const TABLE = /^[^.]+(\.[^.]+)?$/;
const COLUMN = /^[^.*\s]+\.[^.*\s]+\.[^.*\s]+$/;

// The document may violate the schema here: read it through these guards only.
const obj = (v: unknown): Record<string, unknown> | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
const strs = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);

function semanticErrors(doc: LoadedDocument<PolicyDoc>, file: string): SourceError[] {
  const errors: SourceError[] = [];
  const err = (path: (string | number)[], message: string) => errors.push({ file, ...doc.positionOf(path), message });
  const spec = obj(obj(doc.value)?.spec);
  if (!spec) return errors;

  strs(obj(spec.masking)?.columns)?.forEach((c, i) => {
    if (!COLUMN.test(c)) err(['spec', 'masking', 'columns', i], `spec.masking.columns[${i}]: '${c}' is not schema.table.column`);
  });

  const seen = new Map<string, number>();
  const rules = Array.isArray(spec.rules) ? (spec.rules as unknown[]) : [];
  rules.forEach((raw, i) => {
    const rule = obj(raw) as Partial<RuleDoc> | undefined;
    if (!rule) return;
    const at = (...p: (string | number)[]) => ['spec', 'rules', i, ...p];
    const name = typeof rule.name === 'string' ? rule.name : undefined;
    const label = `spec.rules[${i}]${name ? ` (${name})` : ''}`;
    if (name !== undefined) {
      const first = seen.get(name);
      if (first !== undefined) err(at('name'), `${label}: duplicate rule name (first used by spec.rules[${first}])`);
      else seen.set(name, i);
      if (name.startsWith('builtin:') && !BUILTIN_NAMES.has(name)) {
        err(at('name'), `${label}: no built-in rule is named '${name}' (built-ins: ${[...BUILTIN_NAMES].join(', ')})`);
      }
    }
    if (rule.subjects === undefined && rule.groups === undefined && rule.kubernetes === undefined && rule.postgres === undefined) {
      err(at(), `${label}: the rule names nothing to match, so it would match every request; name subjects, groups, kubernetes or postgres (use spec.default for a catch-all)`);
    }
    if (rule.kubernetes !== undefined && rule.postgres !== undefined) {
      err(at('postgres'), `${label}: a rule has either a kubernetes or a postgres block, not both (a request is one or the other, so it could never match)`);
    }
    const globs = (path: (string | number)[], value: unknown, extra?: (v: string) => string | undefined) => {
      if (!Array.isArray(value)) return;
      value.forEach((v, j) => {
        if (typeof v !== 'string' || v === '') return; // the schema reports empty strings
        const problem = globProblem(v) ?? extra?.(v);
        if (problem) err([...path, j], `${label}: ${[...path.slice(3), j].map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').slice(1)}: ${problem}`);
      });
    };
    globs(at('subjects'), rule.subjects);
    globs(at('groups'), rule.groups);
    const k = obj(rule.kubernetes);
    if (k) {
      strs(k.apiGroups)?.forEach((g, j) => {
        const problem = g === '' ? undefined : globProblem(g);
        if (problem) err(at('kubernetes', 'apiGroups', j), `${label}: kubernetes.apiGroups[${j}]: ${problem}`);
      });
      globs(at('kubernetes', 'resources'), k.resources, (v) =>
        v.split('/').length > 2 || v.startsWith('/') || v.endsWith('/') ? `'${v}' is not resource or resource/subresource` : undefined,
      );
      globs(at('kubernetes', 'namespaces'), k.namespaces);
      globs(at('kubernetes', 'names'), k.names);
      globs(at('kubernetes', 'nonResourceURLs'), k.nonResourceURLs, (v) => (v.startsWith('/') ? undefined : `'${v}' must start with '/'`));
      if (k.nonResourceURLs !== undefined && (k.apiGroups !== undefined || k.resources !== undefined || k.namespaces !== undefined || k.names !== undefined)) {
        err(at('kubernetes', 'nonResourceURLs'), `${label}: nonResourceURLs cannot be combined with apiGroups, resources, namespaces or names (a request is either a resource or a non-resource request)`);
      }
    }
    const p = obj(rule.postgres);
    if (p) {
      globs(at('postgres', 'connections'), p.connections);
      const qualified = (v: string) => (TABLE.test(v) ? undefined : `'${v}' is not name or schema.name`);
      globs(at('postgres', 'tables'), p.tables, qualified);
      globs(at('postgres', 'functions'), p.functions, (v) => qualified(v) ?? functionPatternProblem(v));
    }
    checkApproval(rule, label, at, err);
  });
  return errors;
}

/** Functions are named without argument types; operators as `operator(NAME)`, the way the classifier reports them. */
function functionPatternProblem(v: string): string | undefined {
  const name = v.slice(v.lastIndexOf('.') + 1);
  if (!name.includes('(') && !name.includes(')')) return undefined;
  if (/^operator\([^()\s]+\)$/.test(name)) return undefined;
  return `'${v}' has parentheses: name a function without its argument types (the name covers every overload), an operator as operator(NAME)`;
}

/** The same place and message reported twice (schema and semantics) is one error. */
function dedupe(errors: SourceError[]): void {
  const keys = new Set<string>();
  let w = 0;
  for (const e of errors) {
    const key = `${e.line}:${e.col}:${e.message}`;
    if (keys.has(key)) continue;
    keys.add(key);
    errors[w++] = e;
  }
  errors.length = w;
}

function checkApproval(rule: Partial<RuleDoc>, label: string, at: (...p: (string | number)[]) => (string | number)[], err: (p: (string | number)[], m: string) => void) {
  const a = obj(rule.approval) as ApprovalDoc | undefined;
  if (!a) return;
  if (rule.action !== 'approve') {
    err(at('approval'), `${label}: approval applies only to rules with action: approve (this one is '${rule.action}')`);
    return;
  }
  if (a.windowMinutes !== undefined && a.scope !== 'window') {
    err(at('approval', 'windowMinutes'), `${label}: approval.windowMinutes applies only to scope: window`);
  }
  if (a.waitSeconds !== undefined && a.mode === 'defer') {
    err(at('approval', 'waitSeconds'), `${label}: approval.waitSeconds applies only to mode: wait (defer refuses at once)`);
  }
  strs(a.approverGroups)?.forEach((g, j) => {
    const problem = globProblem(g);
    if (problem) err(at('approval', 'approverGroups', j), `${label}: approval.approverGroups[${j}]: ${problem}`);
  });
}

function sortErrors(errors: SourceError[]): void {
  errors.sort((a, b) => a.line - b.line || a.col - b.col);
}
