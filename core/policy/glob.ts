// Globs of the policy language: `*` stands for any run of characters (including
// none, and including `:`, `.` and `/`); every other character is literal. Nothing
// else is special, so `?`, `[`, `{` are refused at validation rather than silently
// taken literally by someone who expected shell semantics.
// Globs are compiled once at load; matching runs per request, so the common shapes
// (exact, `*`, `prefix*`, `*suffix`) avoid regular expressions.

export type Matcher = (s: string) => boolean;

const UNSUPPORTED = /[?[\]{}\\]/;

/** Why a glob is refused, or undefined when it is fine. */
export function globProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'a pattern must not be empty';
  if (pattern.includes('**')) return `'${pattern}': '**' is not supported ('*' already matches any characters, '/' included)`;
  const bad = UNSUPPORTED.exec(pattern);
  if (bad) return `'${pattern}': '${bad[0]}' is not supported in patterns (only '*' is a wildcard)`;
  if (/\s/.test(pattern)) return `'${pattern}': patterns must not contain whitespace`;
  return undefined;
}

export function compileGlob(pattern: string): Matcher {
  const stars = pattern.split('*').length - 1;
  if (stars === 0) return (s) => s === pattern;
  if (pattern === '*') return () => true;
  if (stars === 1) {
    if (pattern.endsWith('*')) {
      const prefix = pattern.slice(0, -1);
      return (s) => s.startsWith(prefix);
    }
    if (pattern.startsWith('*')) {
      const suffix = pattern.slice(1);
      return (s) => s.endsWith(suffix);
    }
    const [a, b] = pattern.split('*');
    return (s) => s.length >= a.length + b.length && s.startsWith(a) && s.endsWith(b);
  }
  const re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`, 's');
  return (s) => re.test(s);
}

/** One matcher for a list of globs: true when any of them matches. */
export function compileGlobs(patterns: readonly string[]): Matcher {
  if (patterns.includes('*')) return () => true;
  const exact = new Set(patterns.filter((p) => !p.includes('*')));
  const wildcards = patterns.filter((p) => p.includes('*'));
  if (wildcards.length === 0) return (s) => exact.has(s);
  // One alternation instead of a closure per pattern: long built-in lists run per call.
  const wild = wildcards.length === 1 ? compileGlob(wildcards[0]) : globsRegExp(wildcards);
  if (exact.size === 0) return wild;
  return (s) => exact.has(s) || wild(s);
}

function globsRegExp(patterns: string[]): Matcher {
  const re = new RegExp(`^(?:${patterns.map((p) => p.split('*').map(escapeRegExp).join('.*')).join('|')})$`, 's');
  return (s) => re.test(s);
}

/**
 * True when every string `inner` matches is also matched by `outer`. Sound, not
 * complete: `outer` is tested against `inner` written out with its stars as literal
 * characters, which can only succeed when each of inner's stars falls inside one of
 * outer's. Used for shadow warnings, where a missed warning is harmless and a false
 * one is not.
 */
export function globCovers(outer: string, inner: string): boolean {
  if (outer === '*' || outer === inner) return true;
  return compileGlob(outer)(inner);
}

/** Every pattern of `inner` is covered by some pattern of `outer`. */
export function globsCover(outer: readonly string[], inner: readonly string[]): boolean {
  return inner.every((i) => outer.some((o) => globCovers(o, i)));
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
