// Raw startup bytes for tests that compare the proxy with the real server byte for byte:
// build packets, send them, and read back what comes before the connection closes.

import net from 'node:net';

/** A startup-phase packet: length, code, then (for a StartupMessage) name/value pairs and the terminator. */
export function startupPacket(code: number, params?: Record<string, string>): Buffer {
  const body = params ? Buffer.concat([...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])]) : Buffer.alloc(0);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(code, 4);
  return Buffer.concat([head, body]);
}

export const SSL_REQUEST = startupPacket(80877103);
export const GSSENC_REQUEST = startupPacket(80877104);
export const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

export interface Frame {
  type: string;
  body: Buffer;
}

/** Splits backend messages starting at `offset` (after any single-byte negotiation answers). */
export function frames(buf: Buffer, offset = 0): Frame[] {
  const out: Frame[] = [];
  let p = offset;
  while (p + 5 <= buf.length) {
    const len = buf.readInt32BE(p + 1);
    if (p + 1 + len > buf.length) break;
    out.push({ type: String.fromCharCode(buf[p]!), body: buf.subarray(p + 5, p + 1 + len) });
    p += 1 + len;
  }
  return out;
}

/** The fields of an ErrorResponse body (S, V, C, M, D …). */
export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const end = body.indexOf(0, p + 1);
    out[String.fromCharCode(body[p]!)] = body.toString('utf8', p + 1, end);
    p = end + 1;
  }
  return out;
}

/**
 * Writes `packets` (each after the previous answer byte when `stepwise`), and resolves with
 * every byte received until the peer closes, a complete frame of type `until` arrived
 * (after `skip` single bytes), or `waitMs` passed. `closed` says whether the peer closed.
 */
export function rawExchange(
  port: number,
  packets: Buffer[],
  opts: { until?: number; skip?: number; waitMs?: number } = {},
): Promise<Buffer & { closed?: boolean }> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const sock = net.connect(port, '127.0.0.1', () => sock.write(Buffer.concat(packets)));
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Object.assign(got, { closed }));
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 3000);
    sock.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (opts.until !== undefined && frames(got, opts.skip ?? 0).some((f) => f.type.charCodeAt(0) === opts.until)) finish(false);
    });
    sock.on('close', () => finish(true)).on('error', () => {});
  });
}
