// The client's side of connection startup: SSLRequest and GSSENCRequest are
// answered 'N' (the listener is loopback), then either a CancelRequest or a
// StartupMessage. Client authentication (`trust` or `token`) follows.

import type net from 'node:net';
import crypto from 'node:crypto';
import { sessionParameterProblem } from '../../core/sql/index.js';
import { CANCEL_REQUEST, GSSENC_REQUEST, MAX_STARTUP_PACKET, ProtocolError, SSL_REQUEST, F, authenticationRequest } from './wire.js';

export type StartupOutcome =
  | { kind: 'startup'; params: Map<string, string>; rest: Buffer }
  | { kind: 'cancel'; pid: number; secret: number };

/** Reads from the socket until a StartupMessage or CancelRequest is complete. */
export function readStartup(sock: net.Socket, timeoutMs = 30_000): Promise<StartupOutcome> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new ProtocolError('timeout waiting for the startup packet')), timeoutMs);
    const onData = (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      try {
        for (;;) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (len < 8 || len > MAX_STARTUP_PACKET) throw new ProtocolError(`invalid startup packet length ${len}`);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          const packet = buf.subarray(0, len);
          buf = buf.subarray(len);
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
            if (len !== 8) throw new ProtocolError('invalid SSL/GSS request');
            sock.write('N');
            continue;
          }
          if (code === CANCEL_REQUEST) {
            if (len !== 16) throw new ProtocolError('invalid cancel request');
            return finish(undefined, { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) });
          }
          if (code >> 16 !== 3) throw new ProtocolError(`unsupported frontend protocol ${code >> 16}.${code & 0xffff}: the proxy speaks 3.0`);
          return finish(undefined, { kind: 'startup', params: parseStartupParams(packet), rest: buf });
        }
      } catch (err) {
        finish(err as Error);
      }
    };
    const onEnd = () => finish(new ProtocolError('client closed the connection during startup'));
    function finish(err?: Error, out?: StartupOutcome) {
      clearTimeout(timer);
      sock.off('data', onData).off('end', onEnd).off('error', onEnd);
      sock.pause();
      if (err) reject(err);
      else resolve(out!);
    }
    sock.on('data', onData).once('end', onEnd).once('error', onEnd);
    sock.resume();
  });
}

function parseStartupParams(packet: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let p = 8;
  const end = packet.length;
  while (p < end && packet[p] !== 0) {
    const k = packet.indexOf(0, p);
    if (k < 0 || k >= end) throw new ProtocolError('invalid startup packet: unterminated name');
    const v = packet.indexOf(0, k + 1);
    if (v < 0 || v >= end) throw new ProtocolError('invalid startup packet: unterminated value');
    params.set(packet.toString('utf8', p, k), packet.toString('utf8', k + 1, v));
    p = v + 1;
  }
  return params;
}

// Startup parameters passed upstream. Everything else is dropped: `replication`
// would open a walsender session that bypasses SQL classification, and `options`
// can set any GUC (including `role`) without a statement the policy would see.
const PASSED_PARAMS = new Set(['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'extra_float_digits', 'IntervalStyle', 'search_path']);

export function upstreamParams(params: Map<string, string>): { pass: Record<string, string>; refused?: string } {
  const pass: Record<string, string> = {};
  const repl = params.get('replication');
  if (repl !== undefined && !['false', 'off', 'no', '0'].includes(repl.toLowerCase())) {
    return { pass, refused: 'replication connections are not allowed through the agentgate proxy' };
  }
  // A setting under which the classifier would read statements differently from the
  // server is refused, not dropped: the client asked for a session the proxy cannot police.
  for (const [k, v] of [...params, ...commandLineSettings(params.get('options') ?? '')]) {
    const problem = sessionParameterProblem(k, v);
    if (problem) return { pass, refused: `startup parameter ${k}=${v} is refused: ${problem}` };
  }
  for (const [k, v] of params) if (PASSED_PARAMS.has(k)) pass[k] = v;
  return { pass };
}

/** The `-c name=value` / `--name=value` settings of an `options` startup parameter (backslash escapes a space). */
function commandLineSettings(options: string): [string, string][] {
  const words: string[] = [];
  let w = '';
  for (let i = 0; i < options.length; i++) {
    const c = options[i];
    if (c === '\\' && i + 1 < options.length) w += options[++i];
    else if (/\s/.test(c)) {
      if (w) words.push(w);
      w = '';
    } else w += c;
  }
  if (w) words.push(w);
  const out: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    let s: string | undefined;
    if (words[i] === '-c') s = words[++i];
    else if (words[i].startsWith('-c')) s = words[i].slice(2);
    else if (words[i].startsWith('--')) s = words[i].slice(2);
    const eq = s?.indexOf('=') ?? -1;
    // PostgreSQL accepts `-` for `_` in option names given this way.
    if (s && eq > 0) out.push([s.slice(0, eq).replace(/-/g, '_'), s.slice(eq + 1)]);
  }
  return out;
}

/** Asks for a cleartext password (loopback only) and reads the PasswordMessage. */
export function readPassword(sock: net.Socket, first: Buffer, timeoutMs = 30_000): Promise<{ password: string; rest: Buffer }> {
  sock.write(authenticationRequest(3));
  return new Promise((resolve, reject) => {
    let buf: Buffer = first;
    const timer = setTimeout(() => finish(new ProtocolError('timeout waiting for the password')), timeoutMs);
    const tryParse = () => {
      if (buf.length < 5) return;
      if (buf[0] !== F.Password) return finish(new ProtocolError(`expected a password message, got type 0x${buf[0].toString(16)}`));
      const len = buf.readInt32BE(1);
      if (len < 5 || len > 65536) return finish(new ProtocolError(`invalid password message length ${len}`));
      if (buf.length < 1 + len) return;
      const nul = buf.indexOf(0, 5);
      if (nul !== len) return finish(new ProtocolError('invalid password message'));
      finish(undefined, { password: buf.toString('utf8', 5, nul), rest: buf.subarray(1 + len) });
    };
    const onData = (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      tryParse();
    };
    const onEnd = () => finish(new ProtocolError('client closed the connection during authentication'));
    function finish(err?: Error, out?: { password: string; rest: Buffer }) {
      clearTimeout(timer);
      sock.off('data', onData).off('end', onEnd).off('error', onEnd);
      sock.pause();
      if (err) reject(err);
      else resolve(out!);
    }
    sock.on('data', onData).once('end', onEnd).once('error', onEnd);
    tryParse();
    sock.resume();
  });
}

export function constantTimeEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb) && a.length === b.length;
}
