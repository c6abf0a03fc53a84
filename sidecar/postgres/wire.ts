// PostgreSQL wire protocol v3: incremental framing over Buffers and the backend
// messages the proxy writes itself. The relay never parses a message it only
// forwards; it reads the 5-byte header and hands the frame's byte range on, so the
// common path copies nothing.

/** Protocol 3.0 in the StartupMessage. */
export const PROTOCOL_3 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;
/** PostgreSQL refuses startup packets above this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10000;

/** Frontend message types (client → server). */
export const F = {
  Bind: 0x42, // B
  Close: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Describe: 0x44, // D
  Execute: 0x45, // E
  Flush: 0x48, // H
  FunctionCall: 0x46, // F
  Parse: 0x50, // P
  Password: 0x70, // p (also SASL responses)
  Query: 0x51, // Q
  Sync: 0x53, // S
  Terminate: 0x58, // X
} as const;

/** Backend message types (server → client). */
export const B = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  CommandComplete: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  DataRow: 0x44, // D
  EmptyQueryResponse: 0x49, // I
  ErrorResponse: 0x45, // E
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
  NoData: 0x6e, // n
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterDescription: 0x74, // t
  ParameterStatus: 0x53, // S
  ParseComplete: 0x31, // 1
  PortalSuspended: 0x73, // s
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const;

const FRONTEND_TYPES = new Set<number>(Object.values(F));
export function isFrontendType(t: number): boolean {
  return FRONTEND_TYPES.has(t);
}

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/**
 * Bytes the whole process may hold for client frames cut across chunks (a large
 * statement arriving in pieces). Shared by every connection, so many clients sending
 * large messages at once are refused instead of exhausting the sidecar's memory.
 */
export class ByteBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }

  get inUse(): number {
    return this.used;
  }
}

/** The process-wide budget for buffered client frames (256 MiB unless AGENTGATE_PG_BUFFER_BUDGET says otherwise). */
export const CLIENT_BUFFERS = new ByteBudget(Number(process.env.AGENTGATE_PG_BUFFER_BUDGET) || 256 * 1024 * 1024);

/** A frame refused because the process-wide buffer budget is spent. */
export class BudgetSpent extends ProtocolError {
  override name = 'BudgetSpent';
}

/**
 * Splits a byte stream into typed messages. `onMessage(type, buf, start, end)` sees
 * the whole frame `[start, end)` (type byte and length included) inside `buf`, which
 * is the arriving chunk whenever the frame lies inside it: no copy. Only a frame cut
 * across chunks is assembled, once, when its last byte arrives.
 */
export class FrameReader {
  private parts: Buffer[] = [];
  private partLen = 0;
  private need = 0;

  /** Bytes of `budget` held for the frame being assembled. */
  private reserved = 0;

  constructor(
    private readonly maxLen: number,
    private readonly validType: (t: number) => boolean = () => true,
    private readonly budget?: ByteBudget,
  ) {}

  /** Gives back what the frame being assembled holds of the budget (the connection closed). */
  dispose(): void {
    if (this.reserved) this.budget?.give(this.reserved);
    this.reserved = 0;
    this.parts = [];
    this.partLen = 0;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get pending(): number {
    return this.partLen;
  }

  /**
   * Feeds a chunk and calls onMessage per complete frame. Returns the buffer the
   * frames were read from (the chunk itself, or the assembled one). Throws
   * ProtocolError on a bad type or length.
   */
  push(chunk: Buffer, onMessage: (type: number, buf: Buffer, start: number, end: number) => void): Buffer {
    let data = chunk;
    if (this.partLen > 0) {
      this.parts.push(chunk);
      this.partLen += chunk.length;
      if (this.partLen < this.need) return EMPTY;
      data = Buffer.concat(this.parts, this.partLen);
      this.parts = [];
      this.partLen = 0;
      // The assembled frame is handed on now; what it held of the budget is free again.
      if (this.reserved) {
        this.budget!.give(this.reserved);
        this.reserved = 0;
      }
    }
    let off = 0;
    const n = data.length;
    while (n - off >= 5) {
      const type = data[off];
      const len = data.readInt32BE(off + 1);
      if (!this.validType(type)) throw new ProtocolError(`invalid message type 0x${type.toString(16).padStart(2, '0')}`);
      if (len < 4) throw new ProtocolError(`invalid message length ${len}`);
      if (len > this.maxLen) throw new ProtocolError(`message of ${len} bytes exceeds the limit of ${this.maxLen}`);
      const end = off + 1 + len;
      if (end > n) {
        this.need = 1 + len;
        if (this.budget) {
          if (!this.budget.take(this.need)) {
            throw new BudgetSpent(`message of ${len} bytes refused: the sidecar's buffer for client messages (${this.budget.limit} bytes, shared by all connections) is spent; try again later or send smaller statements`);
          }
          this.reserved = this.need;
        }
        break;
      }
      onMessage(type, data, off, end);
      off = end;
    }
    if (off < n) {
      if (n - off < 5) this.need = 5;
      const rest = data.subarray(off);
      this.parts.push(rest);
      this.partLen = rest.length;
    }
    return data;
  }

  /** Takes whatever is buffered (used when handing a socket over after the handshake). */
  drain(): Buffer {
    const b = this.partLen ? Buffer.concat(this.parts, this.partLen) : EMPTY;
    this.parts = [];
    this.partLen = 0;
    return b;
  }
}

export const EMPTY = Buffer.alloc(0);

// --- reading fields -------------------------------------------------------------

/** Reads a NUL-terminated string at `pos`; returns [value, position after NUL]. Throws if unterminated. */
export function readCString(buf: Buffer, pos: number, end: number): [string, number] {
  const nul = buf.indexOf(0, pos);
  if (nul < 0 || nul >= end) throw new ProtocolError('unterminated string in message');
  return [buf.toString('utf8', pos, nul), nul + 1];
}

export function skipCString(buf: Buffer, pos: number, end: number): number {
  const nul = buf.indexOf(0, pos);
  if (nul < 0 || nul >= end) throw new ProtocolError('unterminated string in message');
  return nul + 1;
}

/** Error and notice fields by their one-letter code (S, V, C, M, D, H, P, …). */
export type Fields = Map<string, string>;

export function parseFields(buf: Buffer, start: number, end: number): Fields {
  const fields: Fields = new Map();
  let pos = start;
  while (pos < end && buf[pos] !== 0) {
    const code = String.fromCharCode(buf[pos]);
    const [value, next] = readCString(buf, pos + 1, end);
    fields.set(code, value);
    pos = next;
  }
  return fields;
}

// --- writing messages -------------------------------------------------------------

/** A message with type byte: length is patched in. */
export function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

export function fieldsMessage(type: number, fields: Fields | Record<string, string>): Buffer {
  const entries = fields instanceof Map ? [...fields] : Object.entries(fields);
  const parts: Buffer[] = [];
  for (const [k, v] of entries) if (v !== undefined) parts.push(Buffer.from(k, 'latin1'), cstr(v));
  parts.push(Buffer.from([0]));
  return message(type, Buffer.concat(parts));
}

export interface PgErrorFields {
  severity: 'ERROR' | 'FATAL' | 'NOTICE' | 'WARNING';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: number;
}

export function errorResponse(e: PgErrorFields): Buffer {
  const f: Record<string, string> = { S: e.severity, V: e.severity, C: e.code, M: e.message };
  if (e.detail) f.D = e.detail;
  if (e.hint) f.H = e.hint;
  if (e.position !== undefined) f.P = String(e.position);
  return fieldsMessage(B.ErrorResponse, f);
}

export function readyForQuery(status: number): Buffer {
  return Buffer.from([B.ReadyForQuery, 0, 0, 0, 5, status]);
}

export function authenticationRequest(code: number, extra: Buffer = EMPTY): Buffer {
  const body = Buffer.allocUnsafe(4 + extra.length);
  body.writeInt32BE(code, 0);
  extra.copy(body, 4);
  return message(B.Authentication, body);
}

export function backendKeyData(pid: number, secret: number): Buffer {
  const b = Buffer.allocUnsafe(13);
  b[0] = B.BackendKeyData;
  b.writeInt32BE(12, 1);
  b.writeInt32BE(pid, 5);
  b.writeInt32BE(secret, 9);
  return b;
}

export function parameterStatus(name: string, value: string): Buffer {
  return message(B.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]));
}

/** An untyped startup-phase packet (StartupMessage, SSLRequest, CancelRequest). */
export function startupPacket(code: number, body: Buffer = EMPTY): Buffer {
  const b = Buffer.allocUnsafe(8 + body.length);
  b.writeInt32BE(8 + body.length, 0);
  b.writeInt32BE(code, 4);
  body.copy(b, 8);
  return b;
}

export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v));
  parts.push(Buffer.from([0]));
  return startupPacket(PROTOCOL_3, Buffer.concat(parts));
}

export function cancelRequest(pid: number, secret: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(pid, 0);
  body.writeInt32BE(secret, 4);
  return startupPacket(CANCEL_REQUEST, body);
}

export function queryMessage(sql: string): Buffer {
  return message(F.Query, cstr(sql));
}

export function parseMessage(name: string, sql: string): Buffer {
  return message(F.Parse, Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])]));
}

export function passwordMessage(body: Buffer): Buffer {
  return message(F.Password, body);
}

export const TERMINATE = Buffer.from([F.Terminate, 0, 0, 0, 4]);

/** Describe of a statement ('S') or portal ('P'). */
export function describeMessage(what: 'S' | 'P', name: string): Buffer {
  return message(F.Describe, Buffer.concat([Buffer.from(what, 'latin1'), cstr(name)]));
}

export const FLUSH = Buffer.from([F.Flush, 0, 0, 0, 4]);

// --- decoding frontend messages --------------------------------------------------

/** A Parse message: statement name and text (parameter type OIDs checked, not kept). */
export function decodeParse(buf: Buffer, start: number, end: number): { name: string; sql: string } {
  const [name, p1] = readCString(buf, start + 5, end);
  const [sql, p2] = readCString(buf, p1, end);
  if (p2 + 2 > end || p2 + 2 + 4 * buf.readInt16BE(p2) !== end) throw new ProtocolError('invalid Parse message');
  return { name, sql };
}

export interface DecodedBind {
  portal: string;
  statement: string;
  /** Where the parameter-format codes start (for describeBindParams). */
  paramsAt: number;
  /** Result-column format codes (shared empty array when none). */
  formats: number[];
}

/** A Bind message, every length checked against the frame. */
export function decodeBind(buf: Buffer, start: number, end: number): DecodedBind {
  const [portal, p1] = readCString(buf, start + 5, end);
  const [statement, p2] = readCString(buf, p1, end);
  let p = p2;
  const need = (n: number) => {
    if (p + n > end) throw new ProtocolError('invalid Bind message');
  };
  need(2);
  const nParamFormats = buf.readInt16BE(p);
  if (nParamFormats < 0) throw new ProtocolError('invalid Bind message');
  p += 2 + 2 * nParamFormats;
  need(2);
  const nParams = buf.readInt16BE(p);
  if (nParams < 0) throw new ProtocolError('invalid Bind message');
  p += 2;
  for (let i = 0; i < nParams; i++) {
    need(4);
    const len = buf.readInt32BE(p);
    p += 4;
    if (len > 0) {
      need(len);
      p += len;
    }
  }
  need(2);
  const n = buf.readInt16BE(p);
  p += 2;
  if (n < 0 || p + 2 * n !== end) throw new ProtocolError('invalid Bind message');
  let formats = EMPTY_FORMATS;
  if (n > 0) {
    formats = new Array<number>(n);
    for (let i = 0; i < n; i++) formats[i] = buf.readInt16BE(p + 2 * i);
  }
  return { portal, statement, paramsAt: p2, formats };
}
const EMPTY_FORMATS: number[] = [];

/**
 * The parameter values of a Bind (from its parameter-format codes at `p`, already
 * validated by decodeBind) as an SQL comment line: `\n-- with $1 = 'x', $2 = NULL`.
 * Text values are quoted as SQL literals; binary ones shown as hex.
 */
export function describeBindParams(buf: Buffer, p: number): string {
  const nf = buf.readInt16BE(p);
  const fmts: number[] = [];
  for (let i = 0; i < nf; i++) fmts.push(buf.readInt16BE(p + 2 + 2 * i));
  p += 2 + 2 * nf;
  const n = buf.readInt16BE(p);
  p += 2;
  if (n === 0) return '';
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    const binary = (nf === 1 ? fmts[0] : fmts[i] ?? 0) === 1;
    if (len < 0) parts.push(`$${i + 1} = NULL`);
    else {
      const v = binary ? `'\\x${buf.toString('hex', p, p + len)}'` : `'${buf.toString('utf8', p, p + len).replace(/'/g, "''")}'`;
      parts.push(`$${i + 1} = ${v}`);
      p += len;
    }
  }
  return `\n-- with ${parts.join(', ')}`;
}

/** A Describe or Close message: what ('S' or 'P') and the name. */
export function decodeTarget(buf: Buffer, start: number, end: number, kind: string): { what: number; name: string } {
  const what = buf[start + 5];
  const [name, next] = readCString(buf, start + 6, end);
  if (next !== end || (what !== 0x53 && what !== 0x50)) throw new ProtocolError(`invalid ${kind} message`);
  return { what, name };
}

/** One field of an ErrorResponse or NoticeResponse (e.g. 0x43 'C' for the SQLSTATE, 0x56 'V' for the severity). */
export function errorField(buf: Buffer, start: number, end: number, code: number): string | undefined {
  let p = start + 5;
  while (p < end && buf[p] !== 0) {
    const c = buf[p];
    const next = skipCString(buf, p + 1, end);
    if (c === code) return buf.toString('utf8', p + 1, next - 1);
    p = next;
  }
  return undefined;
}
