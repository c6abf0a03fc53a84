// The forms in which a Kubernetes string can hide a card number from a text scanner:
// base64 (Secret data, ConfigMap binaryData, annotation values), JSON held in a string
// (kubectl's last-applied-configuration) and JSON `\u` escapes of digits. Recognising,
// decoding and re-encoding them lives here; deciding what to mask is document-mask.ts.

/** Shortest base64 that can hold 12 digits, the shortest PAN. */
const MIN_BASE64_PAN = 16;
const STD_ALPHABET = /^[A-Za-z0-9+/]+={0,2}$/;
const URL_ALPHABET = /^[A-Za-z0-9_-]+={0,2}$/;

export interface Base64Form {
  bytes: Buffer;
  url: boolean;
  padded: boolean;
}

/**
 * The bytes of `s` when it is canonical base64 (standard or URL alphabet, padded or
 * not) long enough to hold a PAN; undefined for anything that does not round-trip,
 * so ordinary words and identifiers are left to the text scanner.
 */
export function base64Form(s: string): Base64Form | undefined {
  if (s.length < MIN_BASE64_PAN) return undefined;
  const url = !STD_ALPHABET.test(s);
  if (url && !URL_ALPHABET.test(s)) return undefined;
  const padded = s.endsWith('=');
  if (padded && s.length % 4 !== 0) return undefined;
  if (!padded && s.length % 4 === 1) return undefined;
  const bytes = Buffer.from(s, url ? 'base64url' : 'base64');
  const form = { bytes, url, padded };
  return encodeBase64(form) === s ? form : undefined;
}

/** `form.bytes` in the alphabet and padding it was decoded from. */
export function encodeBase64(form: Base64Form): string {
  let out = form.bytes.toString(form.url ? 'base64url' : 'base64');
  if (form.url && form.padded) out += '='.repeat((4 - (out.length % 4)) % 4);
  if (!form.url && !form.padded) out = out.replace(/=+$/, '');
  return out;
}

/** Whether a string may be a JSON object or array (worth a parse). */
export function looksLikeJson(s: string): boolean {
  let i = 0;
  while (i < s.length && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x0a || s.charCodeAt(i) === 0x0d || s.charCodeAt(i) === 0x09)) i++;
  const c = s.charCodeAt(i);
  if (c !== 0x7b && c !== 0x5b) return false;
  let j = s.length - 1;
  while (j > i && (s.charCodeAt(j) === 0x20 || s.charCodeAt(j) === 0x0a || s.charCodeAt(j) === 0x0d || s.charCodeAt(j) === 0x09)) j--;
  const e = s.charCodeAt(j);
  return (c === 0x7b && e === 0x7d) || (c === 0x5b && e === 0x5d);
}

/** Bytes that may be UTF-8 JSON text (no NUL): decoded base64 worth a JSON parse. */
export function bytesLookLikeJson(b: Buffer): boolean {
  if (b.length < 2 || b.includes(0)) return false;
  return looksLikeJson(b.toString('utf8'));
}

/** The whitespace a JSON document ends with (kubectl writes last-applied with a newline). */
export function trailingWhitespace(s: string): string {
  return /\s*$/.exec(s)![0];
}

const DIGIT_ESCAPE = /\\u00(3[0-9]|2[0d])/gi;

/**
 * `s` with JSON escapes of digits, spaces and hyphens (`\u0034`) written plainly, so a
 * PAN spelled with them in a string that is not itself parsed as JSON is seen; `s`
 * itself when it has none.
 */
export function unescapeDigits(s: string): string {
  if (!s.includes('\\')) return s;
  return s.replace(DIGIT_ESCAPE, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** One `*` per character (code point), as the masker stars card-data values. */
export function stars(s: string): string {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++;
  }
  return '*'.repeat(n);
}
