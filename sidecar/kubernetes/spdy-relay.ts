// exec/attach over SPDY/3.1 (kubectl ≤ 1.30, client-go's SPDY executor), relayed frame by
// frame: the agent's frames go upstream unchanged (parsed to record stdin and resizes);
// the API server's DATA frames come back masked by a streaming masker per stream, which
// keeps the byte count of every stream (masking is length-preserving), so SPDY/3.1 flow
// control stays exact even when a digit run held at a frame end moves to the next frame.
// Control frames carry no payload data and pass as they are.

import net from 'node:net';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import { createTextMasker } from '../../core/mask/text.js';
import type { TextMasker } from '../../core/mask/text.js';
import type { MaskOptions } from '../../core/mask/options.js';
import { maskValue } from '../../core/mask/value.js';
import { CONTROL, FLAG_FIN, FrameReader, HeaderInflater, dataFrame, headerBlockOf } from './spdy.js';
import type { Frame } from './spdy.js';
import type { SessionRecorder } from './session-recorder.js';
import type { Upstream } from './upstream.js';
import { status } from './status.js';
import type { StatusObject } from './status.js';

const MAX_HEAD = 64 * 1024;

export type SpdyHandshake = { ok: true; upstream: Socket; head: Buffer; rest: Buffer } | { ok: false; status: StatusObject };

/** Opens the upgraded connection to the API server with the sidecar's credentials. */
/** `target` is the canonical request target (core/kube/canonical.ts), never the raw one. */
export async function spdyHandshake(method: string, target: string, upstream: Upstream, headers: Record<string, string | string[]>): Promise<SpdyHandshake> {
  const u = upstream.url;
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const socket: Socket =
    u.protocol === 'https:'
      ? tls.connect({ host, port, ca: upstream.caPem, ...(net.isIP(host) ? {} : { servername: host }), ALPNProtocols: ['http/1.1'] })
      : net.connect({ host, port });
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${u.host}`];
  for (const [name, value] of Object.entries(headers)) {
    // The API server matches each X-Stream-Protocol-Version value exactly: one line per protocol.
    const values = name === 'x-stream-protocol-version' ? String(value).split(',').map((v) => v.trim()).filter(Boolean) : Array.isArray(value) ? value : [value];
    for (const v of values) lines.push(`${name}: ${v}`);
  }
  lines.push('Connection: Upgrade', 'Upgrade: SPDY/3.1', '', '');
  return new Promise<SpdyHandshake>((resolve) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const fail = (s: StatusObject) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ ok: false, status: s });
    };
    socket.once('error', (err) => fail(status(503, 'ServiceUnavailable', `agentgate: the Kubernetes API server (${u.origin}) is unavailable: ${err.message}`)));
    socket.setTimeout(10_000, () => fail(status(503, 'ServiceUnavailable', `agentgate: the Kubernetes API server (${u.origin}) did not answer the upgrade in time`)));
    socket.on('connect', () => socket.write(lines.join('\r\n')));
    socket.on('secureConnect', () => undefined);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) fail(status(502, 'InternalError', 'agentgate: the API server sent an oversized upgrade response'));
        return;
      }
      const head = buf.subarray(0, end + 4);
      const code = Number(/^HTTP\/1\.1 (\d{3})/.exec(head.toString('latin1'))?.[1] ?? 0);
      if (code === 101) {
        done = true;
        socket.off('data', onData);
        socket.setTimeout(0);
        socket.removeAllListeners('error');
        resolve({ ok: true, upstream: socket, head, rest: buf.subarray(end + 4) });
        return;
      }
      // A refusal: read its body (a Status) and hand it back masked.
      const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head.toString('latin1'))?.[1] ?? -1);
      const body = buf.subarray(end + 4);
      const finish = (b: Buffer) => {
        let s: StatusObject;
        try {
          s = maskValue(JSON.parse(b.toString('utf8')) as StatusObject);
        } catch {
          s = status(code || 502, 'InternalError', `agentgate: the API server refused the upgrade with HTTP ${code}`);
        }
        fail(s);
      };
      if (len >= 0 && body.length >= len) finish(body.subarray(0, len));
      else socket.once('end', () => finish(buf.subarray(end + 4)));
    };
    socket.on('data', onData);
  });
}

export interface SpdySession {
  bytesIn: number;
  bytesOut: number;
  /** Resolves when both connections are closed. */
  closed: Promise<string>;
}

/** Relays an established SPDY/3.1 session; `head`/`rest` are bytes already read from each side. */
export function relaySpdy(client: Socket, clientHead: Buffer, upstream: Socket, upstreamRest: Buffer, opts: MaskOptions, recorder: SessionRecorder | undefined): SpdySession {
  const session: SpdySession = { bytesIn: 0, bytesOut: 0, closed: Promise.resolve('') };
  const fromClient = new FrameReader();
  const fromServer = new FrameReader();
  const inflater = new HeaderInflater();
  const types = new Map<number, string>();
  const maskers = new Map<number, TextMasker>();
  let typesReady: Promise<unknown> = Promise.resolve();
  let closing = '';

  const masker = (id: number) => {
    let m = maskers.get(id);
    if (!m) maskers.set(id, (m = createTextMasker(opts)));
    return m;
  };

  const onClientFrames = (frames: Frame[]) => {
    for (const f of frames) {
      if (f.control && f.type === CONTROL.SYN_STREAM) {
        typesReady = inflater.inflate(headerBlockOf(f)).then((h) => types.set(f.streamId, h.get('streamtype') ?? ''));
      } else if (!f.control && f.payload.length) {
        const id = f.streamId;
        void typesReady.then(() => {
          const t = types.get(id);
          if (t === 'resize') {
            try {
              const size = JSON.parse(f.payload.toString('utf8')) as { Width?: number; Height?: number };
              recorder?.resize(size.Width ?? 0, size.Height ?? 0);
            } catch {
              // a malformed resize is the API server's to refuse
            }
          } else recorder?.input(f.payload);
        });
      }
    }
  };

  const onServerFrames = (frames: Frame[]) => {
    for (const f of frames) {
      if (f.control) {
        if (f.type === CONTROL.RST_STREAM) maskers.delete(f.streamId);
        client.write(f.raw);
        continue;
      }
      const m = masker(f.streamId);
      const fin = (f.flags & FLAG_FIN) !== 0;
      let out = m.write(f.payload);
      if (fin) {
        const tail = m.end();
        if (tail.length) out = Buffer.concat([out, tail]);
        maskers.delete(f.streamId);
      }
      if (out.length === 0 && !fin) continue; // everything held back for the next frame
      session.bytesOut += out.length;
      client.write(dataFrame(f.streamId, f.flags, out));
      const t = types.get(f.streamId);
      if (t === 'error') {
        if (out.length) {
          try {
            const st = JSON.parse(out.toString('utf8')) as { status?: string; message?: string };
            recorder?.marker(st.status === 'Success' ? 'exit 0' : (st.message ?? 'failure'));
          } catch {
            recorder?.marker(out.toString('utf8'));
          }
        }
      } else if (out.length) recorder?.output(out);
    }
  };

  const protocolError = (side: string, err: Error) => {
    closing ||= `${side} sent bytes that are not SPDY/3.1 (${err.message}): session cut`;
    client.destroy();
    upstream.destroy();
  };

  client.on('data', (chunk: Buffer) => {
    session.bytesIn += chunk.length;
    upstream.write(chunk);
    try {
      onClientFrames(fromClient.push(chunk));
    } catch (err) {
      protocolError('the client', err as Error);
    }
  });
  upstream.on('data', (chunk: Buffer) => {
    try {
      onServerFrames(fromServer.push(chunk));
    } catch (err) {
      protocolError('the API server', err as Error);
    }
  });
  client.on('error', () => undefined);
  upstream.on('error', () => undefined);

  session.closed = new Promise<string>((resolve) => {
    let open = 2;
    const closed = (why: string) => {
      closing ||= why;
      if (--open === 0) {
        inflater.close();
        resolve(closing);
      }
    };
    client.once('close', () => {
      upstream.end();
      closed('client closed');
    });
    upstream.once('close', () => {
      client.end();
      closed('upstream closed');
    });
  });

  if (clientHead.length) client.emit('data', clientHead);
  if (upstreamRest.length) upstream.emit('data', upstreamRest);
  return session;
}
