// Session settings under which the classifier would read a statement differently from the
// server. The parser assumes standard_conforming_strings = on and UTF-8 text:
//   - with standard_conforming_strings off, `'\''` ends a literal later for the server than
//     for the parser, so `SELECT '\'' , 1; DROP TABLE cards; --'` is one harmless SELECT to
//     the parser and a SELECT plus a DROP to the server;
//   - client encodings whose multi-byte characters may contain ASCII bytes (SJIS, BIG5, GBK,
//     UHC, GB18030, JOHAB) let a `\` or `'` byte hide inside a character, the same trick;
//   - another search_path makes `cards` mean `secret.cards` while the policy sees public.cards.
// standard_conforming_strings and client_encoding are reported by the server in
// ParameterStatus; all three may be asked for in the StartupMessage (check each parameter),
// and a SET of them is classified with the function `set_config` (classify.ts), which the
// built-in policy guard denies. The proxy checks each with this function and refuses to go on (deny every
// statement, or close the session) when it returns a reason: fail closed.

const SAFE_ENCODINGS = new Set(['utf8', 'utf-8', 'unicode']);
/** search_path values under which an unqualified name resolves as the classifier reports it. */
const DEFAULT_PATHS = new Set(['$user,public', 'public', 'pg_catalog,public', 'pg_catalog,$user,public']);

/** Why `name = value` makes statement text unreadable for the classifier; undefined when it is fine. */
export function sessionParameterProblem(name: string, value: string): string | undefined {
  const n = name.toLowerCase();
  const v = value.trim().replace(/^'(.*)'$/, '$1').toLowerCase();
  if (n === 'standard_conforming_strings' && !['on', 'true', 'yes', '1'].includes(v)) {
    return 'standard_conforming_strings must stay on: the proxy reads string literals the way PostgreSQL does with it on';
  }
  if (n === 'client_encoding' && !SAFE_ENCODINGS.has(v)) {
    return `client_encoding must be UTF8 (not ${value}): the proxy reads statements as UTF-8`;
  }
  if (n === 'search_path' && !DEFAULT_PATHS.has(value.replace(/["'\s]/g, '').toLowerCase())) {
    return `search_path must stay the default (not ${value}): the proxy reports unqualified tables as public.x`;
  }
  return undefined;
}
