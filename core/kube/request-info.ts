// Classifies a Kubernetes API request the way the API server does before it
// authorizes it (the semantics of k8s.io/apiserver's RequestInfoFactory, ported as
// facts, not code), so that policy decides exactly what the server will execute:
//   - only /api (no group) and /apis/{group} are resource prefixes; /api/v1 and
//     /apis/apps/v1 themselves are discovery, i.e. non-resource requests;
//   - GET/HEAD → get, POST → create, PUT → update, PATCH → patch, DELETE → delete;
//     a get without a name is list, or watch when `watch` is set to anything but
//     "false"/"0"; a delete without a name is deletecollection; the legacy
//     /{version}/watch/... and /{version}/proxy/... forms set the verb from the path;
//   - /namespaces/{ns}/{resource}/... is namespaced; /namespaces/{ns} itself is the
//     namespace object, in namespace {ns}, as are its status and finalize subresources;
//   - resource/name/subresource, the rest of the path is not interpreted;
//   - a list with fieldSelector metadata.name=X names X (fields.ParseSelector's grammar:
//     terms split on unescaped `,` and sorted, `!=`/`==`/`=`, `\\` escapes in values).
// Deliberate additions: pods/exec, pods/attach and pods/portforward are `create` whatever
// the method (as the API server authorizes WebSocket exec since 1.30); the target is read by
// canonical.ts, which refuses what could be read two ways; a list whose fieldSelector, limit
// or timeoutSeconds the server could not decode is refused (the server would classify it
// without the selector's name, then fail it). An unparseable labelSelector does the same on
// the server and is not modelled here: the server fails such a request, so nothing it names runs.

import type { KubeRequest } from '../policy/types.js';
import { canonicalTarget, queryValue } from './canonical.js';
import type { CanonicalTarget } from './canonical.js';
import { RequestInfoError } from './request-info-error.js';

export { RequestInfoError };

const API_PREFIXES = new Set(['api', 'apis']);
const GROUPLESS_PREFIXES = new Set(['api']);
const SPECIAL_VERBS = new Set(['proxy', 'watch']);
const SPECIAL_VERBS_NO_SUBRESOURCES = new Set(['proxy']);
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);
const STREAMING_SUBRESOURCES = new Set(['exec', 'attach', 'portforward']);

const METHOD_VERBS: Record<string, string> = { POST: 'create', GET: 'get', HEAD: 'get', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };

/**
 * `target` is the request target as sent (`/api/v1/namespaces/a/pods?watch=1`) or already
 * canonical. Throws RequestInfoError where the API server would refuse the URL before
 * authorizing it, or where the proxy and the server could read it differently.
 */
export function requestInfo(method: string, target: string | CanonicalTarget): KubeRequest {
  const t = typeof target === 'string' ? canonicalTarget(target) : target;
  const path = t.path;
  const upper = method.toUpperCase();
  const info: KubeRequest = {
    protocol: 'kubernetes',
    verb: method.toLowerCase(),
    apiGroup: '',
    apiVersion: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    nonResource: true,
    path,
  };
  let parts = apiSegments(t.segments);
  if (parts.length < 3 || !API_PREFIXES.has(parts[0])) return info;
  const prefix = parts[0];
  parts = parts.slice(1);
  let apiGroup = '';
  if (!GROUPLESS_PREFIXES.has(prefix)) {
    if (parts.length < 3) return info;
    apiGroup = parts[0];
    parts = parts.slice(1);
  }
  info.nonResource = false;
  info.apiGroup = apiGroup;
  info.apiVersion = parts[0];
  parts = parts.slice(1);

  if (SPECIAL_VERBS.has(parts[0])) {
    if (parts.length < 2) throw new RequestInfoError(`unable to determine kind and namespace from url '${path}'`);
    info.verb = parts[0];
    parts = parts.slice(1);
  } else {
    info.verb = METHOD_VERBS[upper] ?? '';
  }

  if (parts[0] === 'namespaces') {
    if (parts.length > 1) {
      info.namespace = parts[1];
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2])) parts = parts.slice(2);
    }
  }

  if (parts.length >= 3 && !SPECIAL_VERBS_NO_SUBRESOURCES.has(info.verb)) info.subresource = parts[2];
  if (parts.length >= 2) info.name = parts[1];
  if (parts.length >= 1) info.resource = parts[0];

  if (info.name === '' && info.verb === 'get') {
    info.verb = isWatch(queryValue(t, 'watch')) ? 'watch' : 'list';
    for (const key of ['limit', 'timeoutSeconds']) {
      const v = queryValue(t, key);
      if (v !== undefined && !INT64.test(v)) throw new RequestInfoError(`query parameter ${key}='${v}' is not an integer`);
    }
    const selector = queryValue(t, 'fieldSelector');
    if (selector !== undefined) {
      const byName = nameFromFieldSelector(selector);
      if (byName !== undefined) info.name = byName;
    }
  }
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';

  if (info.resource === 'pods' && STREAMING_SUBRESOURCES.has(info.subresource) && info.name !== '') info.verb = 'create';
  return info;
}

/** `GET /api/v1/pods` from the `"METHOD /path?query"` form of `policy explain --kube`. */
export function parseKubeRequestLine(line: string): KubeRequest {
  const m = /^\s*([A-Za-z]+)\s+(\/\S*)\s*$/.exec(line);
  if (!m) throw new RequestInfoError(`expected "METHOD /path?query", got '${line}'`);
  return requestInfo(m[1], m[2]);
}

// Go's strings.Trim(path, "/") then Split on "/" (canonical targets have no inner empty segments).
function apiSegments(segments: readonly string[]): string[] {
  return segments.length && segments[segments.length - 1] === '' ? segments.slice(0, -1) : (segments as string[]);
}

// strconv.ParseInt(s, 10, 64)'s syntax; the range is the server's to check.
const INT64 = /^[+-]?\d{1,19}$/;

// The API server's query decoding makes a bool true for any first value other than
// "false" (any case) or "0"; an empty `watch=` is true as well.
function isWatch(v: string | undefined): boolean {
  if (v === undefined) return false;
  return !(v === '0' || v.toLowerCase() === 'false');
}

const TERM_OPERATORS = ['!=', '==', '='];

/**
 * The name a field selector requires (`metadata.name=X` or `==X`), as fields.ParseSelector
 * and RequiresExactMatch read it: terms sorted, the first metadata.name equality wins, and the
 * name is kept only when it is a valid path segment name. Throws where the server's parse fails.
 */
export function nameFromFieldSelector(selector: string): string | undefined {
  const terms = splitTerms(selector).sort(byBytes);
  let name: string | undefined;
  for (const term of terms) {
    if (term === '') continue;
    let found = false;
    for (let i = 0; i < term.length && !found; i++) {
      for (const op of TERM_OPERATORS) {
        if (!term.startsWith(op, i)) continue;
        const field = term.slice(0, i);
        const value = unescapeSelectorValue(term.slice(i + op.length), selector);
        if (name === undefined && op !== '!=' && field === 'metadata.name') name = value;
        found = true;
        break;
      }
    }
    if (!found) throw new RequestInfoError(`invalid field selector '${selector}': cannot understand '${term}'`);
  }
  if (name === undefined || name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('%')) return undefined;
  return name;
}

// Go's sort.Strings compares bytes; UTF-16 order differs from it only above the BMP.
function byBytes(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function splitTerms(s: string): string[] {
  if (s === '') return [];
  const out: string[] = [];
  let start = 0;
  let inSlash = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inSlash) inSlash = false;
    else if (c === '\\') inSlash = true;
    else if (c === ',') {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

function unescapeSelectorValue(v: string, selector: string): string {
  let out = '';
  let inSlash = false;
  for (const c of v) {
    if (inSlash) {
      if (c !== '\\' && c !== ',' && c !== '=') throw new RequestInfoError(`invalid field selector '${selector}': invalid escape sequence '\\${c}'`);
      out += c;
      inSlash = false;
    } else if (c === '\\') inSlash = true;
    else if (c === ',' || c === '=') throw new RequestInfoError(`invalid field selector '${selector}': unescaped '${c}' in a value`);
    else out += c;
  }
  if (inSlash) throw new RequestInfoError(`invalid field selector '${selector}': invalid escape sequence '\\'`);
  return out;
}

/** Impersonation headers, as the API server's impersonation filter reads them. */
export interface ImpersonationHeaders {
  user?: string;
  groups: string[];
  uid?: string;
  /** Extra key (percent-decoded, lower case) → values. */
  extra: Record<string, string[]>;
}

/**
 * Reads `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and
 * `Impersonate-Extra-<key>` from Node-style headers (lower-case names, string or
 * string[] values). Returns undefined when there are none.
 */
export function readImpersonationHeaders(headers: Record<string, string | string[] | undefined>): ImpersonationHeaders | undefined {
  const all = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  let found = false;
  const out: ImpersonationHeaders = { groups: [], extra: {} };
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (!name.startsWith('impersonate-')) continue;
    found = true;
    if (name === 'impersonate-user') out.user = all(value)[0];
    else if (name === 'impersonate-group') out.groups.push(...all(value));
    else if (name === 'impersonate-uid') out.uid = all(value)[0];
    else if (name.startsWith('impersonate-extra-')) {
      let key = name.slice('impersonate-extra-'.length);
      try {
        key = decodeURIComponent(key);
      } catch {
        throw new RequestInfoError(`invalid escape in impersonation header '${rawName}'`);
      }
      (out.extra[key] ??= []).push(...all(value));
    } else {
      throw new RequestInfoError(`unknown impersonation header '${rawName}'`);
    }
  }
  return found ? out : undefined;
}

/**
 * The `impersonate` requests the API server authorizes for these headers, one per
 * impersonated attribute: users (or serviceaccounts for `system:serviceaccount:ns:name`),
 * groups, uids, and userextras/<key> per value. Throws where the server refuses them.
 */
export function impersonationRequests(h: ImpersonationHeaders): KubeRequest[] {
  if (h.user === undefined || h.user === '') {
    throw new RequestInfoError('impersonating groups, a uid or extra fields requires Impersonate-User as well');
  }
  const req = (apiGroup: string, resource: string, name: string, namespace = '', subresource = ''): KubeRequest => ({
    protocol: 'kubernetes',
    verb: 'impersonate',
    apiGroup,
    apiVersion: '',
    namespace,
    resource,
    subresource,
    name,
    nonResource: false,
    path: '',
  });
  const out: KubeRequest[] = [];
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(h.user);
  out.push(sa ? req('', 'serviceaccounts', sa[2], sa[1]) : req('', 'users', h.user));
  for (const g of h.groups) out.push(req('', 'groups', g));
  if (h.uid !== undefined) out.push(req('authentication.k8s.io', 'uids', h.uid));
  for (const [key, values] of Object.entries(h.extra)) for (const v of values) out.push(req('authentication.k8s.io', 'userextras', v, '', key));
  return out;
}
