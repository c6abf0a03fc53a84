// The one reading of a request target that the proxy decides on and forwards. The API
// server (Go net/http and net/url) derives a decoded path and the query pairs that
// url.ParseQuery keeps; this module derives the same structure, refuses every target the
// two readings could disagree on, and builds the upstream target from the structure alone,
// so what is decided is, byte for byte, what the server is sent.
//
// Facts about the server's parsing this relies on (Go ≥ 1.17, kube-apiserver 1.20 builds):
//   - ParseQuery splits on `&` only; a pair containing a raw `;` is dropped, as is a pair
//     whose key or value has an invalid percent escape; `+` is a space; empty pairs are skipped;
//   - the path is percent-decoded once (URL.Path) before routing and authorization, so
//     `%2F` would become a separator only on the server's side;
//   - a request target beginning with `//` is still a path to Go's server, but to URL
//     libraries on the way (WHATWG URL in Node) it names a host.
// Everything ambiguous is refused rather than normalised: no valid client sends it.

import { RequestInfoError } from './request-info-error.js';

export interface CanonicalTarget {
  /** Decoded path segments after the leading `/`; a trailing slash leaves a final ''. */
  readonly segments: readonly string[];
  /** The decoded path, as Go's URL.Path. */
  readonly path: string;
  /** Query parameters as ParseQuery keeps them (decoded), values in order. */
  readonly query: ReadonlyMap<string, readonly string[]>;
  /** The request target to send upstream, encoded from `segments` and `query`. */
  readonly target: string;
}

/** Parameters that are lists by design; any other parameter given twice is refused. */
const MULTI_VALUED = new Set(['command', 'dryRun']);

// Printable ASCII only: a client's raw target never needs more (UTF-8 arrives %-encoded).
const BAD_RAW = /[^\x21-\x7e]|[\\#]/;
const SAFE_SEGMENT = /^[A-Za-z0-9\-._~:@!$'()*+,=]*$/;
const SAFE_KEY = /^[A-Za-z0-9\-._~:@!'()*,/]*$/;
const SAFE_VALUE = /^[A-Za-z0-9\-._~:@!'()*,/=]*$/;
const CONTROL = /[\x00-\x1f\x7f]/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function refuse(why: string): never {
  throw new RequestInfoError(why);
}

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Strict percent-decoding (and `+` as space in queries); undefined for an invalid escape or UTF-8. */
function unescape(s: string, plusIsSpace: boolean): string | undefined {
  if (s.indexOf('%') < 0 && !(plusIsSpace && s.indexOf('+') >= 0)) return s;
  const bytes = Buffer.allocUnsafe(s.length);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const h = i + 2 < s.length ? hex(s.charCodeAt(i + 1)) : -1;
      const l = h >= 0 ? hex(s.charCodeAt(i + 2)) : -1;
      if (l < 0) return undefined;
      bytes[n++] = (h << 4) | l;
      i += 2;
    } else bytes[n++] = plusIsSpace && c === 0x2b ? 0x20 : c;
  }
  try {
    return utf8.decode(bytes.subarray(0, n));
  } catch {
    return undefined;
  }
}

const escapeSegment = (s: string) => (SAFE_SEGMENT.test(s) ? s : encodeURIComponent(s));
const escapeKey = (s: string) => (SAFE_KEY.test(s) ? s : encodeURIComponent(s));
const escapeValue = (s: string) => (SAFE_VALUE.test(s) ? s : encodeURIComponent(s));

/**
 * Parses `raw` (the request target as received) into the structure the API server derives.
 * Throws RequestInfoError, naming what is wrong, for any target the proxy and the server
 * could read differently.
 */
export function canonicalTarget(raw: string): CanonicalTarget {
  if (raw.charCodeAt(0) !== 0x2f || raw.charCodeAt(1) === 0x2f) {
    refuse(`request target '${raw}' is not a path (origin-form): it must start with a single '/'`);
  }
  const bad = BAD_RAW.exec(raw);
  if (bad) {
    const c = bad[0];
    refuse(
      c === '\\'
        ? `request target '${raw}' has a backslash, which URL handling on the way may read as '/'`
        : c === '#'
          ? `request target '${raw}' has a raw '#'`
          : `request target has a character outside printable ASCII (code ${c.charCodeAt(0)})`,
    );
  }
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const parts = rawPath.split('/');
  const segments: string[] = [];
  let path = '';
  let target = '';
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    if (p === '' && i < parts.length - 1) refuse(`path '${rawPath}' has an empty segment ('//')`);
    const s = unescape(p, false);
    if (s === undefined) refuse(`path '${rawPath}' has an invalid percent escape or invalid UTF-8`);
    if (s === '.' || s === '..') refuse(`path '${rawPath}' has a '.' or '..' segment, which URL handling on the way may resolve`);
    if (s.includes('/')) refuse(`path '${rawPath}' has an encoded '/' (%2F) inside a segment`);
    if (s.includes('\\')) refuse(`path '${rawPath}' has an encoded backslash`);
    if (CONTROL.test(s)) refuse(`path '${rawPath}' has an encoded control character`);
    segments.push(s);
    path += '/' + s;
    target += '/' + escapeSegment(s);
  }
  if (segments.length === 0) {
    path = '/';
    target = '/';
  }

  const query = new Map<string, string[]>();
  if (q >= 0) {
    const rawQuery = raw.slice(q + 1);
    let sep = '?';
    for (const pair of rawQuery.split('&')) {
      if (pair === '') continue; // ParseQuery skips empty pairs too
      if (pair.includes(';')) refuse(`query has a raw ';' in '${pair}', which the API server would drop (it is not a separator)`);
      const eq = pair.indexOf('=');
      const key = unescape(eq < 0 ? pair : pair.slice(0, eq), true);
      const value = unescape(eq < 0 ? '' : pair.slice(eq + 1), true);
      if (key === undefined || value === undefined) refuse(`query parameter '${pair}' has an invalid percent escape or invalid UTF-8, which the API server would drop`);
      const values = query.get(key);
      if (values) {
        if (!MULTI_VALUED.has(key)) refuse(`query parameter '${key}' is given more than once`);
        values.push(value);
      } else query.set(key, [value]);
      target += `${sep}${escapeKey(key)}=${escapeValue(value)}`;
      sep = '&';
    }
  }
  return { segments, path, query, target };
}

/** The first value of a query parameter, as the API server's parameter decoding reads it. */
export function queryValue(t: CanonicalTarget, key: string): string | undefined {
  return t.query.get(key)?.[0];
}
