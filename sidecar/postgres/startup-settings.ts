// The settings a client asks for in its StartupMessage, read the way PostgreSQL 15 reads
// them (process_startup_options): first the `options` parameter, split into words by
// pg_split_opts and read as command-line switches (`-c name=value`, `-cname=value`,
// `--name=value`), then every other parameter in packet order, the last assignment of a
// name winning. The proxy forwards the outcome itself (each setting once, with the value
// the server would have ended with), never the client's `options` string, so both sides
// act on the same settings.
//
// Every setting is either passed (the protocol-level ones drivers send on every
// connection, checked only against what the classifier can read under; the
// session-behaviour ones, decided by policy as the `SET` they amount to) or refused with
// a FATAL that names it. None is dropped: a client that asked for a read-only session
// either gets one or is told it cannot have it.

import { sessionParameterProblem } from '../../core/sql/index.js';
import { StartupRefused } from './client-startup.js';

/** Sent by drivers on every connection; they change output formats, not what a statement may do. */
const PROTOCOL_SETTINGS = ['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'extra_float_digits', 'IntervalStyle', 'search_path', 'standard_conforming_strings'];

/** Limits and defaults of the session: passed when the policy allows `SET name = value`. */
const SESSION_SETTINGS = [
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'idle_session_timeout',
  'default_transaction_read_only',
  'default_transaction_isolation',
  'default_transaction_deferrable',
  'client_min_messages',
];

const CANONICAL = new Map<string, { name: string; decided: boolean }>([
  ...PROTOCOL_SETTINGS.map((n) => [n.toLowerCase(), { name: n, decided: false }] as const),
  ...SESSION_SETTINGS.map((n) => [n, { name: n, decided: true }] as const),
]);

/** Every value PostgreSQL's parse_bool reads as false (replication=false is an ordinary session). */
const FALSE_WORDS = new Set(['f', 'fa', 'fal', 'fals', 'false', 'n', 'no', 'of', 'off', '0']);

export interface StartupSettings {
  /** For the upstream StartupMessage: each setting once, as the server would end with it. */
  upstream: [string, string][];
  /** The settings the policy decides, with the statement each amounts to. */
  decided: { name: string; value: string; sql: string }[];
  /** `_pq_.` protocol options the proxy does not speak (answered in NegotiateProtocolVersion). */
  unrecognizedOptions: string[];
}

export function readStartupSettings(params: ReadonlyMap<string, string>): StartupSettings {
  const unrecognizedOptions: string[] = [];
  const assigned: [string, string][] = [];
  const options = params.get('options');
  if (options !== undefined) assigned.push(...commandLineSettings(options));
  for (const [k, v] of params) {
    if (k === 'user' || k === 'database' || k === 'options') continue;
    if (k === 'replication') {
      if (!FALSE_WORDS.has(v.toLowerCase())) throw refused(k, v, 'replication connections are not allowed through the agentgate proxy');
      continue;
    }
    if (k.startsWith('_pq_.')) {
      unrecognizedOptions.push(k);
      continue;
    }
    assigned.push([k, v]);
  }

  const effective = new Map<string, [string, string]>();
  for (const [k, v] of assigned) {
    const key = k.toLowerCase();
    effective.delete(key); // keep the order of the last assignment
    effective.set(key, [k, v]);
  }
  const upstream: [string, string][] = [];
  const decided: StartupSettings['decided'] = [];
  for (const [key, [k, v]] of effective) {
    const known = CANONICAL.get(key);
    if (!known) {
      throw refused(
        k,
        v,
        'the proxy passes through only the settings it knows to be harmless at startup ' +
          `(${[...PROTOCOL_SETTINGS, ...SESSION_SETTINGS].join(', ')}); SET it after connecting, where the policy decides`,
      );
    }
    const problem = sessionParameterProblem(known.name, v);
    if (problem) throw refused(k, v, problem);
    upstream.push([known.name, v]);
    if (known.decided) decided.push({ name: known.name, value: v, sql: `SET ${known.name} TO '${v.replace(/'/g, "''")}'` });
  }
  return { upstream, decided, unrecognizedOptions };
}

function refused(name: string, value: string, why: string): StartupRefused {
  return new StartupRefused(`startup parameter ${name}=${value} is refused: ${why}`, 'setting', '28000');
}

/** C isspace in every locale PostgreSQL runs under, for the ASCII bytes the proxy accepts here. */
const SPACE = new Set([' ', '\t', '\n', '\v', '\f', '\r']);

/**
 * pg_split_opts: words separated by unescaped white space; a backslash makes the next
 * character literal and is itself dropped (a trailing one too). Non-ASCII and control
 * characters are refused: whether the server's isspace() counts them as space depends
 * on its locale, and the two sides must split the string the same way.
 */
export function splitOptions(options: string): string[] {
  const words: string[] = [];
  let w = '';
  let inWord = false;
  let escaped = false;
  for (const c of options) {
    const code = c.codePointAt(0)!;
    if (code > 0x7e || (code < 0x20 && !SPACE.has(c))) {
      throw refused('options', options, 'it holds a character outside printable ASCII, which the server may split differently');
    }
    if (!escaped && SPACE.has(c)) {
      if (inWord) words.push(w);
      w = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (!escaped && c === '\\') escaped = true;
    else {
      escaped = false;
      w += c;
    }
  }
  if (inWord) words.push(w);
  return words;
}

/**
 * The settings of an `options` parameter, as process_postgres_switches reads them:
 * `-c name=value` (value in the next word or attached), `--name=value`, a `-` in the
 * name read as `_`. Any other switch or word is refused rather than guessed at.
 */
export function commandLineSettings(options: string): [string, string][] {
  const words = splitOptions(options);
  const out: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    let arg: string | undefined;
    let form: string;
    if (word === '-c') {
      form = '-c';
      arg = words[++i];
      if (arg === undefined) throw refused('options', options, '-c needs a name=value after it');
    } else if (word.startsWith('-c')) {
      form = '-c';
      arg = word.slice(2);
    } else if (word.startsWith('--') && word.length > 2) {
      form = '--';
      arg = word.slice(2);
    } else {
      throw refused('options', options, `"${word}" is not a -c name=value or --name=value setting (the only forms the proxy passes on)`);
    }
    const eq = arg.indexOf('=');
    if (eq <= 0) throw refused('options', options, `${form === '-c' ? `-c ${arg}` : `--${arg}`} requires a name and a value`);
    out.push([arg.slice(0, eq).replace(/-/g, '_'), arg.slice(eq + 1)]);
  }
  return out;
}
