// Canonical JSON for hashing audit records: the same value always gives the same
// bytes, whatever order its keys were built or parsed in, so a verifier that only
// has the parsed line recomputes exactly what the writer hashed.
//
// The form is RFC 8785 (JSON Canonicalization Scheme) over the JSON data model:
// - object members sorted by key, comparing UTF-16 code units (JavaScript's
//   default string order, which is what RFC 8785 §3.2.3 prescribes);
// - no whitespace; strings escaped as ECMAScript JSON.stringify does (RFC 8785 §3.2.2.2);
// - numbers in the ECMAScript Number-to-String form (RFC 8785 §3.2.2.3), which
//   JSON.stringify also produces for finite numbers.
// Values that are not JSON data are first reduced the way JSON.stringify and
// pino reduce them when the line is written, so the hash covers what is on disk:
// `toJSON()` is called, `undefined`, functions and symbols are left out of objects
// and become `null` in arrays, and non-finite numbers become `null`.
// A BigInt is not JSON data: canonicalJson throws a TypeError for it.

export function canonicalJson(value: unknown): string {
  const out = write(value);
  return out === undefined ? 'null' : out;
}

function write(value: unknown): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'bigint':
      throw new TypeError('canonicalJson: a BigInt is not JSON data');
    default:
      break;
  }
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    let s = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) s += ',';
      s += write(value[i]) ?? 'null';
    }
    return s + ']';
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let s = '{';
  let first = true;
  for (const k of keys) {
    const v = write(obj[k]);
    if (v === undefined) continue;
    s += (first ? '' : ',') + JSON.stringify(k) + ':' + v;
    first = false;
  }
  return s + '}';
}
