// SPDY/3.1 framing, as far as exec/attach need it (kubectl ≤ 1.30 and client-go's
// SPDY executor): frame boundaries, DATA frame rebuilding, and the zlib header
// blocks (one compression context per direction, seeded with the dictionary the
// SPDY/3 draft defines) to learn each stream's `streamtype`.

import zlib from 'node:zlib';

export const FLAG_FIN = 0x01;
export const CONTROL = { SYN_STREAM: 1, SYN_REPLY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, HEADERS: 8, WINDOW_UPDATE: 9 } as const;
const MAX_FRAME = 16 * 1024 * 1024;

// The SPDY/3 header dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): length-prefixed
// header names and values, then a run of common value text.
const DICT_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language',
  'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding',
  'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag',
  'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
  'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
  'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICT_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

export const SPDY_DICTIONARY: Buffer = Buffer.concat([
  ...DICT_WORDS.flatMap((w) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    return [len, Buffer.from(w, 'latin1')];
  }),
  Buffer.from(DICT_TAIL, 'latin1'),
]);

export interface Frame {
  raw: Buffer;
  control: boolean;
  /** Control frames. */
  type: number;
  flags: number;
  /** DATA frames, and SYN_STREAM/SYN_REPLY/RST_STREAM/HEADERS/WINDOW_UPDATE (from the payload). */
  streamId: number;
  payload: Buffer;
}

export class SpdyProtocolError extends Error {
  override name = 'SpdyProtocolError';
}

/** Cuts a byte stream into frames; bytes of an incomplete frame wait for the next push. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.buf.length >= 8) {
      const length = this.buf.readUIntBE(5, 3);
      if (length > MAX_FRAME) throw new SpdyProtocolError(`frame of ${length} bytes exceeds the limit`);
      if (this.buf.length < 8 + length) break;
      const raw = this.buf.subarray(0, 8 + length);
      this.buf = this.buf.subarray(8 + length);
      const control = (raw[0]! & 0x80) !== 0;
      const flags = raw[4]!;
      const payload = raw.subarray(8);
      if (control) {
        const version = raw.readUInt16BE(0) & 0x7fff;
        if (version !== 3) throw new SpdyProtocolError(`SPDY version ${version} (only 3 is spoken)`);
        const type = raw.readUInt16BE(2);
        const hasStream = [CONTROL.SYN_STREAM, CONTROL.SYN_REPLY, CONTROL.RST_STREAM, CONTROL.HEADERS, CONTROL.WINDOW_UPDATE].includes(type as 1);
        const streamId = hasStream && payload.length >= 4 ? payload.readUInt32BE(0) & 0x7fffffff : 0;
        frames.push({ raw, control, type, flags, streamId, payload });
      } else {
        frames.push({ raw, control, type: 0, flags, streamId: raw.readUInt32BE(0) & 0x7fffffff, payload });
      }
    }
    return frames;
  }
}

export function dataFrame(streamId: number, flags: number, payload: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(8 + payload.length);
  f.writeUInt32BE(streamId & 0x7fffffff, 0);
  f[4] = flags;
  f.writeUIntBE(payload.length, 5, 3);
  f.set(payload, 8);
  return f;
}

export function controlFrame(type: number, flags: number, payload: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(8 + payload.length);
  f.writeUInt16BE(0x8003, 0);
  f.writeUInt16BE(type, 2);
  f[4] = flags;
  f.writeUIntBE(payload.length, 5, 3);
  f.set(payload, 8);
  return f;
}

/** The header block of a SYN_STREAM (after 10 bytes), SYN_REPLY or HEADERS (after 4). */
export function headerBlockOf(f: Frame): Buffer {
  return f.payload.subarray(f.type === CONTROL.SYN_STREAM ? 10 : 4);
}

/** Decompresses the header blocks of one direction, in order (one zlib context per direction). */
export class HeaderInflater {
  private readonly z = zlib.createInflate({ dictionary: SPDY_DICTIONARY });
  private queue: Promise<unknown> = Promise.resolve();

  constructor() {
    this.z.on('error', () => undefined);
  }

  inflate(block: Buffer): Promise<Map<string, string>> {
    const run = this.queue.then(
      () =>
        new Promise<Map<string, string>>((resolve, reject) => {
          const out: Buffer[] = [];
          const onData = (d: Buffer) => out.push(d);
          this.z.on('data', onData);
          this.z.write(block);
          this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.z.off('data', onData);
            try {
              resolve(parseHeaderBlock(Buffer.concat(out)));
            } catch (err) {
              reject(err as Error);
            }
          });
        }),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.z.destroy();
  }
}

export class HeaderDeflater {
  private readonly z = zlib.createDeflate({ dictionary: SPDY_DICTIONARY });
  private queue: Promise<unknown> = Promise.resolve();

  deflate(headers: Record<string, string>): Promise<Buffer> {
    const run = this.queue.then(
      () =>
        new Promise<Buffer>((resolve) => {
          const out: Buffer[] = [];
          const onData = (d: Buffer) => out.push(d);
          this.z.on('data', onData);
          this.z.write(encodeHeaderBlock(headers));
          this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.z.off('data', onData);
            resolve(Buffer.concat(out));
          });
        }),
    );
    this.queue = run;
    return run;
  }

  close(): void {
    this.z.destroy();
  }
}

export function parseHeaderBlock(b: Buffer): Map<string, string> {
  const h = new Map<string, string>();
  let o = 0;
  const u32 = () => {
    if (o + 4 > b.length) throw new SpdyProtocolError('truncated header block');
    const v = b.readUInt32BE(o);
    o += 4;
    return v;
  };
  const str = (n: number) => {
    if (o + n > b.length) throw new SpdyProtocolError('truncated header block');
    const s = b.toString('latin1', o, o + n);
    o += n;
    return s;
  };
  const count = u32();
  for (let i = 0; i < count; i++) {
    const name = str(u32());
    h.set(name.toLowerCase(), str(u32()));
  }
  return h;
}

export function encodeHeaderBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const entries = Object.entries(headers);
  parts.push(u32(entries.length));
  for (const [k, v] of entries) {
    parts.push(u32(Buffer.byteLength(k, 'latin1')), Buffer.from(k, 'latin1'), u32(Buffer.byteLength(v, 'latin1')), Buffer.from(v, 'latin1'));
  }
  return Buffer.concat(parts);
}
