// A raw protocol client that keeps every backend message as its exact bytes, so tests
// can assert binary values byte for byte (pg-protocol decodes DataRow fields as UTF-8,
// which loses binary bytes). Frontend messages are built with pg-protocol's serializer.

import net from 'node:net';
import { serialize } from 'pg-protocol';

export interface BackendFrame {
  /** The type byte as a character: 'D' DataRow, 'T' RowDescription, 'E' ErrorResponse, … */
  type: string;
  /** The message body (after type and length). */
  body: Buffer;
}

export class WireClient {
  readonly frames: BackendFrame[] = [];
  closed = false;
  private pending = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 5) {
        const len = this.pending.readInt32BE(1);
        if (this.pending.length < 1 + len) break;
        this.frames.push({ type: String.fromCharCode(this.pending[0]), body: Buffer.from(this.pending.subarray(5, 1 + len)) });
        this.pending = this.pending.subarray(1 + len);
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => {});
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static async connect(port: number): Promise<WireClient> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const c = new WireClient(sock);
    sock.write(serialize.startup({ user: 'agent', database: 'payments' }));
    await c.next('Z');
    c.frames.length = 0;
    return c;
  }

  write(...msgs: Buffer[]): void {
    this.sock.write(Buffer.concat(msgs));
  }

  /** Frames up to and including the next one of `type` (from the start of what is unread); the rest stay. */
  async next(type: string, timeoutMs = 10_000): Promise<BackendFrame[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(0, i + 1);
      if (this.closed) return this.frames.splice(0);
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${type}; got ${this.frames.map((f) => f.type).join(',')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** Runs one statement through Parse/Bind (all results binary or text)/Describe/Execute/Sync; frames up to ReadyForQuery. */
  async extended(text: string, binary: boolean): Promise<BackendFrame[]> {
    this.write(serialize.parse({ text }), serialize.bind({ binary }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync());
    return this.next('Z');
  }

  async simple(text: string): Promise<BackendFrame[]> {
    this.write(serialize.query(text));
    return this.next('Z');
  }

  end(): void {
    this.sock.destroy();
  }
}

/** The values of a DataRow body (null for NULL). */
export function rowValues(body: Buffer): (Buffer | null)[] {
  const n = body.readInt16BE(0);
  const out: (Buffer | null)[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(p);
    p += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.subarray(p, p + len));
      p += len;
    }
  }
  return out;
}

/** The values of every DataRow among `frames`. */
export function dataRows(frames: BackendFrame[]): (Buffer | null)[][] {
  return frames.filter((f) => f.type === 'D').map((f) => rowValues(f.body));
}

/** ErrorResponse fields by code ('C' SQLSTATE, 'M' message). */
export function errorFields(frame: BackendFrame): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 0;
  while (p < frame.body.length && frame.body[p] !== 0) {
    const code = String.fromCharCode(frame.body[p]);
    const end = frame.body.indexOf(0, p + 1);
    out[code] = frame.body.toString('utf8', p + 1, end);
    p = end + 1;
  }
  return out;
}

// Binary encoders for expected values.
export const int4 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
export const int8 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(v);
  return b;
};
export const float8 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(v);
  return b;
};
/** A length-prefixed element (array element, record field); null for NULL. */
export const el = (v: Buffer | null): Buffer => (v === null ? int4(-1) : Buffer.concat([int4(v.length), v]));
/** A one-dimensional binary array. */
export const array1 = (elemOid: number, values: (Buffer | null)[]): Buffer =>
  Buffer.concat([int4(1), int4(values.includes(null) ? 1 : 0), int4(elemOid), int4(values.length), int4(1), ...values.map(el)]);
/** A binary record: field count, then (OID, length, bytes) per field. */
export const record = (fields: [number, Buffer | null][]): Buffer => Buffer.concat([int4(fields.length), ...fields.flatMap(([oid, v]) => [int4(oid), el(v)])]);
/** Binary numeric from base-10000 digits. */
export const numeric = (weight: number, digits: number[], dscale = 0, negative = false): Buffer => {
  const b = Buffer.alloc(8 + digits.length * 2);
  b.writeInt16BE(digits.length, 0);
  b.writeInt16BE(digits.length ? weight : 0, 2);
  b.writeUInt16BE(negative ? 0x4000 : 0, 4);
  b.writeInt16BE(dscale, 6);
  digits.forEach((d, i) => b.writeInt16BE(d, 8 + i * 2));
  return b;
};
export const text = (s: string): Buffer => Buffer.from(s, 'utf8');
