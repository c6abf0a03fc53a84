// A Session between two in-memory sockets, for byte-level tests without a server: the
// test plays the client and the server with hand-built frames and reads what the
// session passed on each way.

import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { Session } from '../../../sidecar/postgres/session.js';
import type { SessionContext } from '../../../sidecar/postgres/session.js';
import { parsePolicy, StaticPolicySource } from '../../../core/policy/index.js';
import { SqlClassifier, loadSqlParser } from '../../../core/sql/index.js';
import { policyMasker } from '../../../sidecar/postgres/masker.js';
import { boundMetrics } from '../../../sidecar/postgres/metrics.js';
import type { AuditEventInput, AuditRecord } from '../../../core/audit/types.js';
import { quietLog } from './harness.js';

export class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  ended = false;
  destroyed = false;
  writableLength = 0;
  writableHighWaterMark = 1 << 20;
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  end(b?: Buffer): this {
    if (b) this.write(b);
    this.ended = true;
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  isPaused(): boolean {
    return false;
  }
  /** Everything written since the last take, as frames. */
  take(): Frame[] {
    const all = Buffer.concat(this.written.splice(0));
    return splitFrames(all);
  }
}

export interface Frame {
  type: string;
  body: Buffer;
}

export function splitFrames(b: Buffer): Frame[] {
  const out: Frame[] = [];
  for (let p = 0; p + 5 <= b.length; ) {
    const len = b.readInt32BE(p + 1);
    out.push({ type: String.fromCharCode(b[p]), body: b.subarray(p + 5, p + 1 + len) });
    p += 1 + len;
  }
  return out;
}

/** Fields of an ErrorResponse body by their one-letter code. */
export function errorFields(body: Buffer): Record<string, string> {
  const f: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const nul = body.indexOf(0, p + 1);
    f[String.fromCharCode(body[p])] = body.toString('utf8', p + 1, nul);
    p = nul + 1;
  }
  return f;
}

/** The first C string of a frame body (a Query's text, a Describe's name after its kind byte…). */
export const cstringAt = (body: Buffer, at = 0): string => body.toString('utf8', at, body.indexOf(0, at));

// --- backend frames ------------------------------------------------------------------

function frame(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const cstr = (s: string) => Buffer.from(s + '\0');

export const be = {
  parseComplete: () => frame('1'),
  bindComplete: () => frame('2'),
  closeComplete: () => frame('3'),
  noData: () => frame('n'),
  commandComplete: (tag: string) => frame('C', cstr(tag)),
  ready: (status = 'I') => frame('Z', Buffer.from(status)),
  error: (fields: Record<string, string>) => frame('E', Buffer.concat([...Object.entries(fields).map(([k, v]) => Buffer.concat([Buffer.from(k), cstr(v)])), Buffer.from([0])])),
  /** RowDescription of text columns: [name, type OID]. */
  rowDescription: (cols: [string, number][]) => {
    const parts = [Buffer.from([0, 0])];
    parts[0].writeInt16BE(cols.length);
    for (const [name, oid] of cols) {
      const f = Buffer.alloc(18);
      f.writeUInt32BE(oid, 6);
      f.writeInt16BE(-1, 10);
      f.writeInt32BE(-1, 12);
      parts.push(cstr(name), f);
    }
    return frame('T', Buffer.concat(parts));
  },
  dataRow: (values: string[]) => {
    const parts = [Buffer.alloc(2)];
    parts[0].writeInt16BE(values.length);
    for (const v of values) {
      const l = Buffer.alloc(4);
      l.writeInt32BE(Buffer.byteLength(v));
      parts.push(l, Buffer.from(v));
    }
    return frame('D', Buffer.concat(parts));
  },
};

export const FIXTURE_POLICY = `apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: session-fixture }
spec:
  default: deny
  rules:
    - name: reads
      postgres: { statements: [select, set, show, transaction] }
      action: allow
`;

export interface Fixture {
  client: FakeSocket;
  server: FakeSocket;
  session: Session;
  /** Events the sink accepted. */
  events: AuditEventInput[];
  /** While set, the sink throws on append with this message. */
  refuse: string | undefined;
  healthy: boolean;
  fromClient(...frames: Buffer[]): void;
  fromServer(...frames: Buffer[]): void;
}

export async function startFixture(policyText = FIXTURE_POLICY, extra: Partial<SessionContext> = {}): Promise<Fixture> {
  await loadSqlParser();
  const loaded = parsePolicy(policyText, 'fixture.yaml');
  if (!loaded.policy) throw new Error(JSON.stringify(loaded.errors));
  const policy = new StaticPolicySource(loaded.policy);
  const client = new FakeSocket();
  const server = new FakeSocket();
  const fx = { client, server, events: [] as AuditEventInput[], refuse: undefined as string | undefined, healthy: true } as Fixture;
  const ctx: SessionContext = {
    connection: 'fixture',
    identity: { subject: 'agent', groups: [], via: 'trust' },
    sessionId: 'fixture-session',
    clientAddress: '127.0.0.1',
    policy,
    classifier: new SqlClassifier(),
    masker: policyMasker(policy),
    audit: {
      append(e: AuditEventInput): AuditRecord {
        if (fx.refuse) throw new Error(fx.refuse);
        fx.events.push(e);
        return { ...e, seq: fx.events.length, prevHash: '', hash: '' };
      },
      // Healthy by its own account: the session must still refuse when an append throws.
      health: () => ({ ok: true }),
      flush: async () => {},
      close: async () => {},
    },
    metrics: boundMetrics('fixture'),
    log: quietLog,
    starred: new Set(),
    maxMessageBytes: 1 << 20,
    auditHealthy: () => fx.healthy,
    cancelUpstream: () => {},
    serverParameters: [],
    ...extra,
  };
  fx.session = new Session(client as unknown as net.Socket, server as unknown as net.Socket, ctx);
  fx.session.start(Buffer.alloc(0), Buffer.alloc(0));
  fx.fromClient = (...frames) => void client.emit('data', Buffer.concat(frames));
  fx.fromServer = (...frames) => void server.emit('data', Buffer.concat(frames));
  return fx;
}

/** Lets setImmediate callbacks (pause resumes) run. */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
