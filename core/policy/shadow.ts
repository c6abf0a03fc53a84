// Rules that can never take effect: a rule R is shadowed when a more restrictive rule S
// (of the policy, or a built-in guard) matches every request R matches, since S then
// always wins. The check is sound, not complete: it only warns when coverage is
// certain field by field, so a warning is always real.

import { ACTION_RANK } from './types.js';
import type { CompiledRule } from './rules.js';
import type { RuleDoc } from './schema.js';
import { globCovers, globsCover } from './glob.js';
import { splitQualified } from './rules.js';

export interface Shadowed {
  /** Index of the shadowed rule in the policy's rules. */
  index: number;
  name: string;
  by: string;
  message: string;
}

export function findShadowed(rules: readonly CompiledRule[]): Shadowed[] {
  const out: Shadowed[] = [];
  rules.forEach((r, index) => {
    if (r.tier !== 'user') return;
    const s = rules.find((s) => s !== r && s.tier !== 'fallback' && ACTION_RANK[s.action] > ACTION_RANK[r.action] && covers(s.doc, r.doc));
    if (!s) return;
    const hint = s.tier === 'guard' ? `; to change a built-in rule, define a rule named '${s.name}' in its place` : '';
    out.push({
      index,
      name: r.name,
      by: s.name,
      message: `rule '${r.name}' (${r.action}) can never take effect: rule '${s.name}' (${s.action}) matches every request it matches and is more restrictive${hint}`,
    });
  });
  return out;
}

/** S matches every request R matches. S is deny or approve here, so its set fields match ANY. */
function covers(s: RuleDoc, r: RuleDoc): boolean {
  if (!listCovered(s.subjects, r.subjects) || !listCovered(s.groups, r.groups)) return false;
  if (s.kubernetes) {
    const a = s.kubernetes;
    const b = r.kubernetes;
    if (!b) return false;
    if (a.verbs && !(b.verbs && (a.verbs.includes('*') || (!b.verbs.includes('*') && b.verbs.every((v) => a.verbs!.includes(v)))))) return false;
    if (a.apiGroups && !(b.apiGroups && b.apiGroups.every((g) => a.apiGroups!.some((o) => (o === '' ? g === '' : globCovers(o, g)))))) return false;
    if (a.resources && !(b.resources && resourcesCover(a.resources, b.resources))) return false;
    if (!listCovered(a.namespaces, b.namespaces) || !listCovered(a.names, b.names) || !listCovered(a.nonResourceURLs, b.nonResourceURLs)) return false;
  }
  if (s.postgres) {
    const a = s.postgres;
    const b = r.postgres;
    if (!b) return false;
    if (!listCovered(a.connections, b.connections)) return false;
    if (a.statements && !(b.statements && b.statements.every((x) => a.statements!.includes(x)))) return false;
    // An allow rule's tables are covered vacuously by an operation on no table at all,
    // which S (matching ANY table) does not match: S cannot cover R then.
    if (a.tables && !(b.tables && r.action !== 'allow' && qualifiedCover(a.tables, b.tables))) return false;
    if (a.functions && !(b.functions && r.action !== 'allow' && qualifiedCover(a.functions, b.functions))) return false;
  }
  return true;
}

function listCovered(outer: string[] | undefined, inner: string[] | undefined): boolean {
  if (!outer) return true;
  return inner !== undefined && globsCover(outer, inner);
}

function resourcesCover(outer: string[], inner: string[]): boolean {
  if (outer.includes('*')) return true;
  return inner.every((i) => {
    const [ir, is] = splitSub(i);
    return outer.some((o) => {
      const [or, os] = splitSub(o);
      if (!globCovers(or, ir)) return false;
      return os === undefined ? is === undefined : is !== undefined && globCovers(os, is);
    });
  });
}

function splitSub(p: string): [string, string | undefined] {
  const i = p.indexOf('/');
  return i < 0 ? [p, undefined] : [p.slice(0, i), p.slice(i + 1)];
}

function qualifiedCover(outer: string[], inner: string[]): boolean {
  return inner.every((i) => {
    const [is, iname] = splitQualified(i);
    return outer.some((o) => {
      const [os, oname] = splitQualified(o);
      if (!globCovers(oname, iname)) return false;
      return os === undefined || (is !== undefined && globCovers(os, is));
    });
  });
}
