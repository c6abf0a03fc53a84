// YAML configuration with errors that point at file:line:column. Policies, the
// sidecar config and the injector config all go through here, so a typo in any
// of them is reported the same way: every error at once, each with its place.

import { LineCounter, parseAllDocuments, isMap, isSeq, isScalar, isPair, isAlias } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';

export interface SourceError {
  file: string;
  line: number;
  col: number;
  message: string;
}

export function formatSourceError(e: SourceError): string {
  return `${e.file}:${e.line}:${e.col}: ${e.message}`;
}

export type Schema =
  | { kind: 'string'; enum?: readonly string[]; pattern?: RegExp; patternHint?: string; nonEmpty?: boolean }
  | { kind: 'number'; integer?: boolean; min?: number; max?: number }
  | { kind: 'boolean' }
  | { kind: 'array'; items: Schema; minItems?: number }
  | { kind: 'object'; fields: Record<string, Field>; name?: string }
  | { kind: 'map'; values: Schema }
  | { kind: 'any' };

export interface Field {
  schema: Schema;
  required?: boolean;
}

export interface LoadedDocument<T> {
  /** The plain value (as `yaml`'s toJS gives it). Only trust it when `errors` is empty. */
  value: T;
  errors: SourceError[];
  /** Position of a path inside this document (for errors found after validation). */
  positionOf(path: (string | number)[]): { line: number; col: number };
}

/** Parses every document of a YAML (or JSON) text and validates each against `schema`. */
export function loadYamlDocuments<T>(text: string, file: string, schema: Schema): LoadedDocument<T>[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const list: Document.Parsed[] = Array.isArray(docs) ? docs : [docs as unknown as Document.Parsed];
  const out: LoadedDocument<T>[] = [];
  for (const doc of list) {
    const errors: SourceError[] = [];
    const at = (offset: number | undefined) => {
      const p = lc.linePos(offset ?? 0);
      return { line: p.line, col: p.col };
    };
    for (const e of doc.errors) {
      const { line, col } = at(e.pos[0]);
      errors.push({ file, line, col, message: `invalid YAML: ${e.message.split('\n')[0]}` });
    }
    if (errors.length === 0) {
      const root = doc.contents as YamlNode | null;
      if (root === null) {
        // An empty document between separators is not an error; callers skip it.
        continue;
      }
      validateNode(root, schema, [], (node, path, message) => {
        const { line, col } = at(node?.range?.[0]);
        errors.push({ file, line, col, message: path.length ? `${formatPath(path)}: ${message}` : message });
      });
    }
    let value: T;
    try {
      value = doc.toJS({ maxAliasCount: 100 }) as T;
    } catch (err) {
      errors.push({ file, line: 1, col: 1, message: `invalid YAML: ${(err as Error).message}` });
      value = undefined as T;
    }
    out.push({
      value,
      errors,
      positionOf(path) {
        const node = doc.getIn(path, true) as YamlNode | undefined;
        return at(node?.range?.[0]);
      },
    });
  }
  return out;
}

/** `spec.rules[2].postgres.statements` */
export function formatPath(path: (string | number)[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${p}` : p;
  return s;
}

type Report = (node: YamlNode | null | undefined, path: (string | number)[], message: string) => void;

function typeName(node: YamlNode | null | undefined): string {
  if (node === null || node === undefined) return 'null';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isAlias(node)) return 'an alias';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    return typeof v === 'string' ? 'a string' : typeof v === 'number' ? 'a number' : typeof v === 'boolean' ? 'a boolean' : typeof v;
  }
  return 'an unknown node';
}

function validateNode(node: YamlNode | null | undefined, schema: Schema, path: (string | number)[], report: Report): void {
  switch (schema.kind) {
    case 'any':
      return;
    case 'string': {
      if (!isScalar(node) || typeof node.value !== 'string') {
        // Numbers and booleans where a string is expected are a classic YAML trap (`on`, `0123`): refuse them.
        report(node, path, `expected a string, got ${typeName(node)}`);
        return;
      }
      const v = node.value;
      if (schema.nonEmpty && v.length === 0) report(node, path, 'must not be empty');
      if (schema.enum && !schema.enum.includes(v)) {
        report(node, path, `unknown value '${v}' (expected one of: ${schema.enum.join(', ')})`);
      }
      if (schema.pattern && !schema.pattern.test(v)) report(node, path, `invalid value '${v}'${schema.patternHint ? ` (${schema.patternHint})` : ''}`);
      return;
    }
    case 'number': {
      if (!isScalar(node) || typeof node.value !== 'number') {
        report(node, path, `expected a number, got ${typeName(node)}`);
        return;
      }
      const v = node.value;
      if (schema.integer && !Number.isInteger(v)) report(node, path, `expected a whole number, got ${v}`);
      if (schema.min !== undefined && v < schema.min) report(node, path, `must be at least ${schema.min}, got ${v}`);
      if (schema.max !== undefined && v > schema.max) report(node, path, `must be at most ${schema.max}, got ${v}`);
      return;
    }
    case 'boolean':
      if (!isScalar(node) || typeof node.value !== 'boolean') report(node, path, `expected true or false, got ${typeName(node)}`);
      return;
    case 'array': {
      if (!isSeq(node)) {
        report(node, path, `expected a list, got ${typeName(node)}`);
        return;
      }
      if (schema.minItems !== undefined && node.items.length < schema.minItems) {
        report(node, path, schema.minItems === 1 ? 'must not be empty' : `needs at least ${schema.minItems} entries`);
      }
      node.items.forEach((item, i) => validateNode(item as YamlNode, schema.items, [...path, i], report));
      return;
    }
    case 'map': {
      if (!isMap(node)) {
        report(node, path, `expected a mapping, got ${typeName(node)}`);
        return;
      }
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        validateNode(pair.value as YamlNode, schema.values, [...path, key], report);
      }
      return;
    }
    case 'object': {
      if (!isMap(node)) {
        report(node, path, `expected a mapping, got ${typeName(node)}`);
        return;
      }
      const seen = new Set<string>();
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyNode = pair.key as YamlNode;
        const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
        if (key === undefined) {
          report(keyNode, path, 'keys must be plain strings');
          continue;
        }
        seen.add(key);
        const field = schema.fields[key];
        if (!field) {
          const known = Object.keys(schema.fields);
          const hint = suggest(key, known);
          report(keyNode, [...path, key], `unknown key${hint ? ` (did you mean '${hint}'?)` : ` (known keys: ${known.join(', ')})`}`);
          continue;
        }
        validateNode(pair.value as YamlNode, field.schema, [...path, key], report);
      }
      for (const [key, field] of Object.entries(schema.fields)) {
        if (field.required && !seen.has(key)) report(node, path, `missing required key '${key}'`);
      }
      return;
    }
  }
}

/** The closest known key within edit distance 2, for "did you mean". */
function suggest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0];
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j];
      dp[j] = Math.min(dp[j] + 1, dp[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length];
}
