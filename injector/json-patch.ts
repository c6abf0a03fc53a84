// RFC 6902 JSON Patch from the difference between the pod we were given and the
// pod we want. Objects are diffed member by member; an array whose length changed
// is replaced whole: container and volume lists change length when we inject, and
// index-wise edits of a shifted list would be larger and harder to read.

export interface PatchOperation {
  op: 'add' | 'remove' | 'replace';
  path: string;
  value?: unknown;
}

/** RFC 6901: `~` → `~0`, `/` → `~1` (annotation keys like `agentgate.dev/status`). */
export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (isPlainObject(a)) {
    if (!isPlainObject(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    for (const k of ka) if (!(k in b) || !deepEqual(a[k], b[k])) return false;
    return true;
  }
  return false;
}

/** The operations that turn `from` into `to` (both plain JSON values). */
export function createPatch(from: unknown, to: unknown): PatchOperation[] {
  const ops: PatchOperation[] = [];
  diff(from, to, '', ops);
  return ops;
}

function diff(a: unknown, b: unknown, path: string, ops: PatchOperation[]): void {
  if (deepEqual(a, b)) return;
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of Object.keys(a)) {
      if (a[k] !== undefined && (!(k in b) || b[k] === undefined)) ops.push({ op: 'remove', path: `${path}/${escapePointer(k)}` });
    }
    for (const k of Object.keys(b)) {
      if (b[k] === undefined) continue;
      const p = `${path}/${escapePointer(k)}`;
      if (!(k in a) || a[k] === undefined) ops.push({ op: 'add', path: p, value: b[k] });
      else diff(a[k], b[k], p, ops);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    for (let i = 0; i < a.length; i++) diff(a[i], b[i], `${path}/${i}`, ops);
    return;
  }
  ops.push({ op: 'replace', path, value: b });
}
