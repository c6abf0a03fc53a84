// Opening the real database connection: TCP, optional TLS (disable | require |
// verify-full), StartupMessage with the configured user and database, and
// authentication in whatever way the server asks (SCRAM-SHA-256, MD5, cleartext,
// trust). Every failure becomes an UpstreamError carrying the SQLSTATE and message
// the client should see; nothing here hangs past the connect timeout.

import net from 'node:net';
import tls from 'node:tls';
import { B, FrameReader, ProtocolError, SSL_REQUEST, startupMessage, startupPacket, passwordMessage, parseFields, readCString, queryMessage } from './wire.js';
import { ScramClient, md5Password } from './scram.js';

export type TlsMode = 'disable' | 'require' | 'verify-full';

export interface UpstreamTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  tls: { mode: TlsMode; ca?: Buffer; serverName?: string };
  connectTimeoutMs: number;
}

export interface UpstreamSession {
  socket: net.Socket;
  /** ParameterStatus messages in the order the server sent them. */
  parameters: [string, string][];
  /** The server's own cancel key for this backend. */
  pid: number;
  secret: number;
  /** Transaction status from the first ReadyForQuery (normally 'I'). */
  status: number;
  /** NoticeResponse frames sent during startup, relayed to the client as they are. */
  notices: Buffer[];
  /** Bytes that arrived after ReadyForQuery (normally none). */
  rest: Buffer;
}

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(
    message: string,
    readonly sqlstate: string,
    /** Bounded reason for metrics: `connect`, `tls`, `auth`, `protocol`, `server`. */
    readonly reason: string,
  ) {
    super(message);
  }
}

/** Opens a raw transport (TCP, then TLS per mode). Also used for CancelRequest. */
export async function openTransport(t: UpstreamTarget): Promise<net.Socket> {
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: t.host, port: t.port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new UpstreamError(`could not connect to ${t.host}:${t.port}: timeout after ${t.connectTimeoutMs} ms`, '08001', 'connect'));
    }, t.connectTimeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(new UpstreamError(`could not connect to ${t.host}:${t.port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, '08001', 'connect'));
    });
  });
  if (t.tls.mode === 'disable') return sock;
  sock.write(startupPacket(SSL_REQUEST));
  const answer = await readBytes(sock, 1, t.connectTimeoutMs);
  if (answer[0] !== 0x53 /* S */) {
    sock.destroy();
    throw new UpstreamError(`server ${t.host}:${t.port} does not support TLS, but tls.mode is ${t.tls.mode}`, '08001', 'tls');
  }
  const verify = t.tls.mode === 'verify-full';
  return new Promise<net.Socket>((resolve, reject) => {
    const ts = tls.connect({
      socket: sock,
      servername: net.isIP(t.tls.serverName ?? t.host) ? undefined : t.tls.serverName ?? t.host,
      ca: t.tls.ca,
      rejectUnauthorized: verify,
      // verify-full checks the name against host (or serverName), like libpq.
      checkServerIdentity: verify ? (_host, cert) => tls.checkServerIdentity(t.tls.serverName ?? t.host, cert) : () => undefined,
    });
    const timer = setTimeout(() => {
      ts.destroy();
      reject(new UpstreamError(`TLS handshake with ${t.host}:${t.port} timed out`, '08001', 'tls'));
    }, t.connectTimeoutMs);
    ts.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(ts);
    });
    ts.once('error', (err) => {
      clearTimeout(timer);
      ts.destroy();
      reject(new UpstreamError(`TLS with ${t.host}:${t.port} failed: ${err.message}`, '08001', 'tls'));
    });
  });
}

function readBytes(sock: net.Socket, n: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new UpstreamError('server did not answer the TLS request', '08001', 'tls')), timeoutMs);
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (got.length >= n) {
        if (got.length > n) sock.unshift(got.subarray(n));
        finish(undefined, got.subarray(0, n));
      }
    };
    const onEnd = () => finish(new UpstreamError('server closed the connection during the TLS request', '08006', 'tls'));
    const onError = (e: Error) => finish(new UpstreamError(`server connection failed: ${e.message}`, '08006', 'connect'));
    function finish(err?: Error, buf?: Buffer) {
      clearTimeout(timer);
      sock.off('data', onData).off('end', onEnd).off('error', onError);
      sock.pause();
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(buf!);
    }
    sock.on('data', onData).once('end', onEnd).once('error', onError);
    sock.resume();
  });
}

/**
 * Connects and authenticates. `password` is read by the caller (the password file,
 * re-read when it changes). `extraParams` are the client's harmless startup
 * parameters (application_name, client_encoding, …).
 */
export async function connectUpstream(t: UpstreamTarget, password: () => Promise<string>, extraParams: Record<string, string>): Promise<UpstreamSession> {
  const sock = await openTransport(t);
  try {
    return await handshake(sock, t, password, extraParams);
  } catch (err) {
    sock.destroy();
    throw err;
  }
}

function handshake(sock: net.Socket, t: UpstreamTarget, password: () => Promise<string>, extraParams: Record<string, string>): Promise<UpstreamSession> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader(1 << 20);
    const parameters: [string, string][] = [];
    const notices: Buffer[] = [];
    let pid = 0;
    let secret = 0;
    let scram: ScramClient | undefined;
    let done = false;
    const timer = setTimeout(() => fail(new UpstreamError(`server ${t.host}:${t.port} did not finish the startup in ${t.connectTimeoutMs} ms`, '08001', 'connect')), t.connectTimeoutMs);

    const fail = (err: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.off('data', onData);
      reject(err instanceof UpstreamError ? err : new UpstreamError(err.message, '08006', 'protocol'));
    };
    const withPassword = (f: (pw: string) => Buffer) => {
      password().then(
        (pw) => {
          if (!done) sock.write(f(pw));
        },
        (err: Error) => fail(new UpstreamError(`cannot read the upstream password: ${err.message}`, '08001', 'auth')),
      );
    };

    const onMessage = (type: number, buf: Buffer, start: number, end: number) => {
      const body = start + 5;
      switch (type) {
        case B.Authentication: {
          const code = buf.readInt32BE(body);
          if (code === 0) return; // AuthenticationOk
          if (code === 3) return withPassword((pw) => passwordMessage(Buffer.from(pw + '\0')));
          if (code === 5) {
            const salt = Buffer.from(buf.subarray(body + 4, body + 8));
            return withPassword((pw) => passwordMessage(Buffer.from(md5Password(t.user, pw, salt) + '\0')));
          }
          if (code === 10) {
            const mechs: string[] = [];
            let p = body + 4;
            while (p < end && buf[p] !== 0) {
              const [m, next] = readCString(buf, p, end);
              mechs.push(m);
              p = next;
            }
            if (!mechs.includes('SCRAM-SHA-256')) return fail(new UpstreamError(`server offers no supported SASL mechanism (${mechs.join(', ')})`, '08001', 'auth'));
            return withPassword((pw) => {
              scram = new ScramClient(pw);
              const first = Buffer.from(scram.clientFirst());
              const mech = Buffer.from('SCRAM-SHA-256\0');
              const len = Buffer.allocUnsafe(4);
              len.writeInt32BE(first.length);
              return passwordMessage(Buffer.concat([mech, len, first]));
            });
          }
          if (code === 11) {
            if (!scram) return fail(new UpstreamError('SASL continue without SASL start', '08P01', 'protocol'));
            const final = scram.clientFinal(buf.toString('utf8', body + 4, end));
            sock.write(passwordMessage(Buffer.from(final)));
            return;
          }
          if (code === 12) {
            if (!scram) return fail(new UpstreamError('SASL final without SASL start', '08P01', 'protocol'));
            scram.verifyServerFinal(buf.toString('utf8', body + 4, end));
            return;
          }
          return fail(new UpstreamError(`server asks for an unsupported authentication method (code ${code})`, '08001', 'auth'));
        }
        case B.ParameterStatus: {
          const [name, next] = readCString(buf, body, end);
          const [value] = readCString(buf, next, end);
          parameters.push([name, value]);
          return;
        }
        case B.BackendKeyData:
          pid = buf.readInt32BE(body);
          secret = buf.readInt32BE(body + 4);
          return;
        case B.NoticeResponse:
          notices.push(Buffer.from(buf.subarray(start, end)));
          return;
        case B.NegotiateProtocolVersion:
          return;
        case B.ErrorResponse: {
          const f = parseFields(buf, body, end);
          const code = f.get('C') ?? '08006';
          const reason = code.startsWith('28') ? 'auth' : 'server';
          return fail(new UpstreamError(f.get('M') ?? 'server error', code, reason));
        }
        case B.ReadyForQuery: {
          if (done) return;
          done = true;
          clearTimeout(timer);
          sock.off('data', onData);
          sock.off('error', onError);
          sock.off('end', onEnd);
          // Until the session attaches its own handlers, an error must not go unhandled.
          sock.on('error', () => {});
          sock.pause();
          const status = buf[body];
          // Anything after ReadyForQuery in this chunk belongs to the relay.
          const after = Buffer.from(buf.subarray(end));
          resolve({ socket: sock, parameters, pid, secret, status, notices, rest: Buffer.concat([after, reader.drain()]) });
          return;
        }
        default:
          return fail(new UpstreamError(`unexpected message 0x${type.toString(16)} during startup`, '08P01', 'protocol'));
      }
    };
    const onData = (chunk: Buffer) => {
      try {
        // Stop at ReadyForQuery: frames after it are handed over in `rest`.
        reader.push(chunk, (type, buf, start, end) => {
          if (done) return;
          onMessage(type, buf, start, end);
          if (done && type === B.ReadyForQuery) throw new HandOver();
        });
      } catch (err) {
        if (err instanceof HandOver) return;
        fail(err instanceof ProtocolError ? new UpstreamError(`invalid message from server: ${err.message}`, '08P01', 'protocol') : (err as Error));
      }
    };
    const onError = (err: Error) => fail(new UpstreamError(`server connection failed: ${err.message}`, '08006', 'connect'));
    const onEnd = () => fail(new UpstreamError('server closed the connection during startup', '08006', 'connect'));
    sock.on('data', onData);
    sock.once('error', onError);
    sock.once('end', onEnd);
    sock.write(startupMessage({ ...extraParams, user: t.user, database: t.database }));
    sock.resume();
  });
}

class HandOver extends Error {}

/**
 * Runs one simple query on a freshly authenticated connection (before the client
 * is attached) and returns its rows as text. Used to resolve `spec.masking.columns`
 * to table OIDs and column numbers.
 */
export function runSetupQuery(sock: net.Socket, sql: string, timeoutMs: number): Promise<{ rows: (string | null)[][]; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader(1 << 26);
    const rows: (string | null)[][] = [];
    let error: string | undefined;
    const timer = setTimeout(() => finish(new UpstreamError('setup query timed out', '08006', 'server')), timeoutMs);
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk, (type, buf, start, end) => {
          if (type === B.DataRow) {
            const n = buf.readInt16BE(start + 5);
            let p = start + 7;
            const row: (string | null)[] = [];
            for (let i = 0; i < n; i++) {
              const len = buf.readInt32BE(p);
              p += 4;
              if (len < 0) row.push(null);
              else {
                row.push(buf.toString('utf8', p, p + len));
                p += len;
              }
            }
            rows.push(row);
          } else if (type === B.ErrorResponse) {
            error = parseFields(buf, start + 5, end).get('M');
          } else if (type === B.ReadyForQuery) {
            if (error) finish(new UpstreamError(`setup query failed: ${error}`, '08006', 'server'));
            else finish(undefined, Buffer.from(buf.subarray(end)));
            throw new HandOver();
          }
        });
      } catch (err) {
        if (!(err instanceof HandOver)) finish(err as Error);
      }
    };
    const onEnd = () => finish(new UpstreamError('server closed the connection', '08006', 'server'));
    function finish(err?: Error, rest?: Buffer) {
      clearTimeout(timer);
      sock.off('data', onData).off('end', onEnd).off('error', onEnd);
      sock.pause();
      if (err) reject(err);
      else resolve({ rows, rest: rest! });
    }
    sock.on('data', onData).once('end', onEnd).once('error', onEnd);
    sock.write(queryMessage(sql));
    sock.resume();
  });
}
