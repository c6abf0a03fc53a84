// Card-data masking: the public API. Import from here (`core/mask/index.js`).
//
// Rules (design "Masking"): a PAN is 12–19 digits, Luhn-valid and in a brand's IIN
// range with a published length (Visa, Mastercard incl. 2221–2720, Amex, Discover,
// JCB, Diners, UnionPay, Maestro). Digits are any script's decimal digits (full-width,
// Arabic-Indic …, read by value). Groups are joined by one or two separators (space,
// tab, hyphen, dot, slash, underscore, Unicode spaces) or by a comma before exactly
// three digits (thousands); a group followed by an exponent (`4.1…e+15`) is also read
// as the integer it spells. Candidates: every 13–19 digit window of joined groups,
// wherever it starts (`qty 10 4111 1111 1111 1111`, `card4111111111111111`, a PAN glued
// to more digits), and 12-digit stretches of whole groups (pan-runs.ts). Every digit
// of any PAN is masked except the kept ones (each byte of a multi-byte digit);
// separators and byte length stay:
//   `4111 1111 1111 1111` → `**** **** **** 1111`   (keep: 'last4', default)
//   `4111111111111111`    → `411111******1111`      (keep: 'bin+last4')
//   `4111111111111111`    → `0000000000001111`      (fill: '0', numeric SQL columns)
// The output never contains a PAN (masking repeats until none is left) and
// masking it again changes nothing. (With fill '0' the zeros are digits again: a
// bin+last4 result like 4111110000001111 can itself pass the Luhn check; it holds
// no card data, but a second pass would treat it as a PAN.)
//
// Options (every function): { keep?: 'last4' | 'bin+last4', fill?: '*' | '0',
//   cardFields?: string[] /* extra JSON keys starred whole, JSON and value modes */ }.
// optionsFromSpec(policy.masking) turns a policy's `spec.masking` into options.
//
// One-shot:
//   maskText(str | buf, opts)        → same type; the input itself if nothing was masked.
//   maskInPlace(buf, start, end, opts) → number of PANs; masks a slice in place, same
//                                      length (PostgreSQL DataRow values, COPY rows).
//   maskJson(str | buf, opts)        → masked JSON text; throws JsonMaskError if invalid.
//   maskValue(value, opts)           → masked deep copy of a parsed JS value (audit events,
//                                      decoded Secret data); card-field values starred.
//   isPan(s) (ASCII digits grouped by spaces or hyphens), cardBrand(digits), luhnValid(digits)
// Streaming (output identical however the input is cut; bounded memory):
//   createTextMasker(opts) / createJsonMasker(opts) → { write(chunk): Buffer, end(): Buffer }
//     write returns what can be released now; a run of digits cut by the chunk end is
//     held back (at most 4 KiB) until the next write or end. Unchanged bytes come back
//     as views of the chunk (no copy): don't reuse a chunk's memory before writing the
//     result. Text mode passes every other byte untouched, invalid UTF-8 included.
//     A run of digit groups longer than 4 KiB is decided window by window (each byte
//     with at least 256 bytes of context on both sides, more than any PAN spans).
//   createMaskStream({ format: 'text' | 'json', ...opts }) → node:stream Transform.
//   Creating a masker costs well under a microsecond (shared option tables, lazy
//   buffers); masker.reset() makes one as new for the next stream (and clears a JSON error).
// JSON mode: PANs masked inside strings and keys (escaped digits like \u0034 are
// decoded, so they are caught, and written out plainly); a number that is a PAN
// becomes a string with the masked value; values of card-data keys (cvv, cvv2, cvc,
// cvc2, cid, pin, securityCode, track1, track2, trackData + opts.cardFields,
// case-insensitive, `_`/`-` ignored) are starred: strings and numbers become `*`
// of the same length (numbers turn into strings), arrays/objects under such a key
// are starred throughout, true/false/null stay. A stream of values (NDJSON, watch
// events) is fine. Invalid JSON fails closed: JsonMaskError (line, byte offset),
// the chunk that failed releases nothing, later writes throw again.
// Metrics: agentgate_pans_masked_total{format} and
// agentgate_card_fields_masked_total{format}, format = text | json | value.

export { maskText, maskTextCounted, maskInPlace, createTextMasker, TextMasker } from './text.js';
export type { StreamMasker } from './text.js';
export { maskJson, createJsonMasker, JsonMasker, JsonMaskError, MAX_NUMBER_BYTES, MAX_DEPTH } from './json.js';
export { maskValue } from './value.js';
export { createMaskStream, maskerTransform } from './stream.js';
export type { MaskFormatName } from './stream.js';
export { isPan, cardBrand, luhnValid } from './brands.js';
export type { CardBrand } from './brands.js';
export { DEFAULT_CARD_FIELDS, normalizeFieldName, optionsFromSpec } from './options.js';
export type { MaskOptions, KeepMode } from './options.js';
export { RUN_WINDOW } from './scanner.js';
