// The client's side of connection startup, read the way PostgreSQL 15's postmaster
// reads it (ProcessStartupPacket): SSLRequest answered 'S' with the sidecar's loopback
// certificate (or 'N' when TLS is off), GSSENCRequest answered 'N', each at most once;
// then a CancelRequest or a StartupMessage. Client authentication (`trust` or `token`)
// follows. Every way this can end early is a StartupRefused carrying what the client
// is told (or that it is told nothing, where PostgreSQL says nothing) and a bounded
// reason for the audit event and the metric.

import net from 'node:net';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { PROTOCOL_3, CANCEL_REQUEST, GSSENC_REQUEST, MAX_STARTUP_PACKET, ProtocolError, SSL_REQUEST, F, authenticationRequest, message } from './wire.js';

/** Why a connection ended before its session started (a metric label: keep the set small). */
export type RefusalReason =
  | 'protocol'
  | 'tls-required'
  | 'tls-handshake'
  | 'setting'
  | 'policy'
  | 'authentication'
  | 'upstream'
  | 'masking-setup'
  | 'timeout'
  | 'draining';

export class StartupRefused extends Error {
  override name = 'StartupRefused';
  constructor(
    message: string,
    readonly reason: RefusalReason,
    readonly sqlstate: string,
    /** PostgreSQL closes without a word here (it only logs): so does the proxy. */
    readonly silent = false,
    readonly detail?: string,
    /** Say it in protocol 2's error format, which is what the server answers a 2.0 StartupMessage with. */
    readonly protocol2 = false,
  ) {
    super(message);
  }
}

/** The client left before starting a session (no bytes, a Terminate, EOF): not a refusal. */
export class ClientLeft extends Error {
  override name = 'ClientLeft';
}

export type ClientTlsMode = 'offer' | 'require' | 'disable';

export interface ClientTls {
  mode: ClientTlsMode;
  /** The serving certificate signed by the sidecar's loopback CA; needed unless mode is disable. */
  context?: tls.SecureContext;
}

export type StartupOutcome =
  | {
      kind: 'startup';
      /** The socket the session runs on: the TLS socket once TLS was negotiated. */
      socket: net.Socket;
      tls: boolean;
      /** The minor protocol version the client asked for (the proxy speaks 3.0). */
      minorVersion: number;
      params: Map<string, string>;
      rest: Buffer;
    }
  | { kind: 'cancel'; pid: number; secret: number };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads from the socket until a StartupMessage or CancelRequest is complete, negotiating
 * TLS on the way. Rejects with StartupRefused or ClientLeft.
 */
export async function readStartup(sock: net.Socket, clientTls: ClientTls, onSecure: (ts: tls.TLSSocket) => void, timeoutMs = 30_000): Promise<StartupOutcome> {
  const deadline = Date.now() + timeoutMs;
  let socket = sock;
  let sslDone = false;
  let gssDone = false;
  let secured = false;
  for (;;) {
    const got = await readPacket(socket, deadline - Date.now());
    if ('end' in got) {
      // PostgreSQL reports nothing to the client for a bad length word or a packet cut
      // short (COMMERROR: the server log only), nor for a client that just went away.
      if (got.end === LEFT) throw new ClientLeft('client closed the connection before the startup packet');
      throw new StartupRefused(got.end, 'protocol', '08P01', true);
    }
    const { packet, rest } = got;
    const code = packet.readInt32BE(4);
    if (code === SSL_REQUEST && !sslDone) {
      if (packet.length !== 8) throw new StartupRefused('invalid SSL negotiation request length', 'protocol', '08P01', true);
      const offer = clientTls.mode !== 'disable' && clientTls.context !== undefined;
      socket.write(offer ? 'S' : 'N');
      sslDone = true;
      if (offer) {
        // As the server: the handshake first (from the socket, not from what was buffered),
        // then bytes that arrived before the answer are refused, over the TLS channel.
        const ts = await upgrade(socket, clientTls.context!, deadline - Date.now());
        onSecure(ts);
        socket = ts;
        secured = true;
        // A GSSENCRequest is only allowed while TLS was refused (either order works then).
        gssDone = true;
      }
      // Bytes sent before the answer were not encrypted: a client bug or an injection.
      if (rest.length) throw unencrypted('SSL');
      continue;
    }
    if (code === GSSENC_REQUEST && !gssDone) {
      if (packet.length !== 8) throw new StartupRefused('invalid GSSAPI negotiation request length', 'protocol', '08P01', true);
      socket.write('N');
      if (rest.length) throw unencrypted('GSSAPI');
      gssDone = true;
      continue;
    }
    if (code === CANCEL_REQUEST) {
      if (packet.length !== 16) throw new StartupRefused('invalid length of cancel request packet', 'protocol', '08P01', true);
      return { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) };
    }
    const major = code >>> 16;
    const minor = code & 0xffff;
    if (major !== 3) {
      const text = `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`;
      throw new StartupRefused(text, 'protocol', '0A000', false, undefined, major === 2);
    }
    if (clientTls.mode === 'require' && !secured) {
      throw new StartupRefused('this connection requires TLS: connect with sslmode=require, verify-ca or verify-full', 'tls-required', '28000');
    }
    return { kind: 'startup', socket, tls: secured, minorVersion: minor, params: parseStartupParams(packet), rest };
  }
}

function unencrypted(what: string): StartupRefused {
  return new StartupRefused(
    `received unencrypted data after ${what} request`,
    'protocol',
    '08P01',
    false,
    'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  );
}

/** The client went away (nothing sent, or a Terminate): no refusal to record. */
const LEFT = '';

type Packet = { packet: Buffer; rest: Buffer } | { end: string };

/** One length-prefixed startup packet, or why there is none (LEFT, or the problem). */
function readPacket(sock: net.Socket, timeoutMs: number): Promise<Packet> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new StartupRefused('timeout waiting for the startup packet', 'timeout', '08P01', true)), Math.max(timeoutMs, 0));
    const tryParse = () => {
      if (buf.length < 4 || (buf[0] === F.Terminate && buf.length < 5)) return;
      const len = buf.readInt32BE(0);
      if (buf[0] === F.Terminate && buf.readInt32BE(1) === 4) return done({ end: LEFT });
      if (len < 8 || len > MAX_STARTUP_PACKET) return done({ end: 'invalid length of startup packet' });
      if (buf.length < len) return;
      done({ packet: buf.subarray(0, len), rest: buf.subarray(len) });
    };
    const onData = (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      tryParse();
    };
    const onEnd = () => done({ end: buf.length ? 'incomplete startup packet' : LEFT });
    function done(out: Packet) {
      finish(undefined, out);
    }
    function finish(err?: Error, out?: Packet) {
      clearTimeout(timer);
      sock.off('data', onData).off('end', onEnd).off('error', onEnd).off('close', onEnd);
      sock.pause();
      if (err) reject(err);
      else resolve(out!);
    }
    sock.on('data', onData).once('end', onEnd).once('error', onEnd).once('close', onEnd);
    sock.resume();
  });
}

function upgrade(sock: net.Socket, context: tls.SecureContext, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const ts = new tls.TLSSocket(sock, { isServer: true, secureContext: context });
    const timer = setTimeout(() => fail(new Error('timeout')), Math.max(timeoutMs, 0));
    const fail = (err: Error) => {
      clearTimeout(timer);
      ts.off('secure', ok);
      ts.destroy();
      reject(new StartupRefused(`TLS handshake failed: ${err.message}`, 'tls-handshake', '08P01', true));
    };
    const ok = () => {
      clearTimeout(timer);
      ts.off('error', fail);
      ts.on('error', () => {});
      ts.pause();
      resolve(ts);
    };
    ts.once('secure', ok).once('error', fail);
    sock.resume();
  });
}

function parseStartupParams(packet: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let p = 8;
  const end = packet.length;
  // As the server: name/value pairs up to an empty name, which must be the last byte.
  while (p < end) {
    if (packet[p] === 0) break;
    const k = packet.indexOf(0, p);
    if (k < 0 || k + 1 >= end) break;
    const v = packet.indexOf(0, k + 1);
    if (v < 0) break;
    params.set(text(packet, p, k), text(packet, k + 1, v));
    p = v + 1;
  }
  if (p !== end - 1) throw new StartupRefused('invalid startup packet layout: expected terminator as last byte', 'protocol', '08P01');
  return params;
}

function text(b: Buffer, start: number, end: number): string {
  try {
    return utf8.decode(b.subarray(start, end));
  } catch {
    throw new StartupRefused('invalid startup packet: a parameter is not valid UTF-8', 'protocol', '08P01');
  }
}

/** NegotiateProtocolVersion: the newest version the proxy speaks (3.0) and the options it ignored. */
export function negotiateProtocolVersion(unrecognized: readonly string[]): Buffer {
  const parts = [Buffer.alloc(8)];
  parts[0].writeInt32BE(PROTOCOL_3, 0);
  parts[0].writeInt32BE(unrecognized.length, 4);
  for (const o of unrecognized) parts.push(Buffer.from(o + '\0'));
  return message(0x76, Buffer.concat(parts));
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
