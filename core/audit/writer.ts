// The chained audit writer: masks every event, chains it (chain.ts), and writes it
// as one JSON line to a file or stdout.
//
// - append() is synchronous and cheap (a PostgreSQL sidecar appends one event per
//   statement): the event is serialized ONCE (record-json.ts), masking every
//   string on the way; that canonical text is what is hashed, and the line written
//   is that same text with `,"hash":"…"` put before its closing brace. The line is
//   therefore not canonical itself (hash comes last), which verify does not need:
//   it re-canonicalizes every parsed record.
// - The line goes to the destination (destination.ts), which joins everything
//   appended within an event-loop turn into one write. This is the job pino did
//   here before (with its destination replaced by ours for the reasons given in
//   destination.ts); pino's own serializer would only serialize the record a second
//   time (it was about 12% of an append), so the pre-serialized line skips it. A
//   process crash loses at most the lines not yet written; the file never holds a
//   half line except after a crash mid-write.
// - Durability is batched: an fsync every `fsyncIntervalMs` or every `fsyncEvery`
//   records, whichever comes first; flush() resolves once everything appended
//   before it is fsynced.
// - Fail closed: after a write or fsync error the sink is broken, append() throws
//   AuditUnavailableError and health() says why, so a proxy denies what it cannot
//   record. A file sink recovers by itself: every `recoverIntervalMs` it picks the
//   chain up again from the file's last complete line (as on a restart) and writes
//   and fsyncs an `audit-trail-recovered` record that counts the records appended
//   but lost with the failed write; only once that record is on disk does it accept
//   appends again. (stdout cannot be re-read, so a stdout sink stays broken.)
// - With a signing key, checkpoints (checkpoint.ts) are taken every
//   `checkpointEvery` records, every `checkpointIntervalMs`, and on close.
// - With `rotateBytes`, a file that reached that size is renamed to
//   `<file>.<12-digit last seq>` and a new file continues the chain; its first
//   record is a `system` event `audit-file-continued` naming the previous file.

import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, renameSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { AppendDestination } from './destination.js';
import { GENESIS_HASH, canonicalBody, linkHash } from './chain.js';
import { CHECKPOINT_EVENT, CONTINUATION_EVENT, signCheckpoint } from './checkpoint.js';
import type { SigningKey } from './keys.js';
import { auditBytesWritten, auditCheckpoints, auditErrors, auditEventsWritten, auditFsyncSeconds } from './metrics.js';
import { newestRotated, resumeFile, rotatedName } from './recover.js';
import type { ChainHead } from './recover.js';
import type { AuditEventInput, AuditHealth, AuditRecord, AuditSink } from './types.js';
import type { AuditMasker, MaskedStatement } from './masker.js';
import { RecordJson, isEventId } from './record-json.js';
import { countPans } from '../mask/metrics.js';

/** Masks a parsed JSON value (objects, arrays, strings, numbers) and returns the masked copy. */
export type ValueMasker = (value: unknown) => unknown;

export interface AuditWriterOptions {
  /** Path of the audit file, or `-` for stdout (a stdout chain starts at the genesis on every start). */
  file: string;
  /**
   * The masker every event passes through before anything is hashed or written:
   * core/mask's (masker.ts, masks in the serializing walk), or any function that
   * returns a masked copy (then serialized as returned).
   */
  mask: AuditMasker | ValueMasker;
  /** Enables signed checkpoints. */
  signingKey?: SigningKey;
  /** Side file for checkpoints; default `<file>.checkpoints` for a file, none for stdout; false for none. */
  checkpointFile?: string | false;
  checkpointEvery?: number;
  checkpointIntervalMs?: number;
  fsyncEvery?: number;
  fsyncIntervalMs?: number;
  /**
   * Bytes handed to the destination but not yet written that make append() refuse
   * (throw AuditUnavailableError) until the disk catches up; default 64 MiB.
   * Audit records are never dropped: a caller that cannot record, denies.
   */
  maxBacklogBytes?: number;
  /** Rotate when the file has at least this many bytes (default: never). */
  rotateBytes?: number;
  /** Clock, for tests. */
  now?: () => Date;
  /** Called once when the sink breaks (write or fsync error). */
  onError?: (err: Error) => void;
  /** How often a broken file sink tries to recover (default 1000 ms). */
  recoverIntervalMs?: number;
  /** Called when a broken sink wrote again; the argument is the failure it recovered from. */
  onRecover?: (reason: string) => void;
}

/** append() refused: the record could not be taken (backlog, write error, closed). The caller must not act. */
export class AuditUnavailableError extends Error {
  override name = 'AuditUnavailableError';
}

/** The writer's record after a recovery: it counts what was appended but never reached the file. */
export const RECOVERED_EVENT = 'audit-trail-recovered';


/** `,"hash":"<64 hex>"}\n` */
const HASH_TAIL_BYTES = 76;

const DEFAULTS = { checkpointEvery: 10_000, checkpointIntervalMs: 60_000, fsyncEvery: 1000, fsyncIntervalMs: 100, maxBacklogBytes: 64 * 1024 * 1024, recoverIntervalMs: 1000 };

// An fsync on a pipe or terminal (stdout) fails with one of these; there is nothing to sync.
const UNSYNCABLE = new Set(['EINVAL', 'ENOTSUP', 'EROFS']);

export class AuditWriter implements AuditSink {
  private seq: number;
  private lastHash: string;
  private syncedSeq: number;
  private syncing?: Promise<void>;
  private dest!: AppendDestination;
  /** Serializers: `masked` masks with core/mask's masker in its walk, `plain` writes as given. */
  private masked: RecordJson;
  private readonly plain = new RecordJson(undefined);
  private fileBytes = 0;
  private readonly regularFile: boolean;
  private failure?: Error;
  private recoverTimer?: NodeJS.Timeout;
  private closed = false;
  private sinceCheckpoint = 0;
  private checkpointing?: Promise<void>;
  private checkpointHandle?: FileHandle;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly retiring: Promise<void>[] = [];
  private readonly retired = new Set<AppendDestination>();
  private readonly opts: Required<Pick<AuditWriterOptions, 'checkpointEvery' | 'checkpointIntervalMs' | 'fsyncEvery' | 'fsyncIntervalMs' | 'maxBacklogBytes' | 'recoverIntervalMs'>> & AuditWriterOptions;
  private readonly now: () => Date;

  private constructor(opts: AuditWriterOptions, head: ChainHead | undefined) {
    this.opts = { ...DEFAULTS, ...opts };
    this.masked = typeof opts.mask === 'function' ? this.plain : new RecordJson(opts.mask);
    this.now = opts.now ?? (() => new Date());
    this.seq = head?.seq ?? 0;
    this.lastHash = head?.hash ?? GENESIS_HASH;
    this.syncedSeq = this.seq;
    this.regularFile = opts.file !== '-';
    this.openDestination();
    const fsyncTimer = setInterval(() => {
      if (this.syncedSeq < this.seq) this.flush().catch(() => undefined);
    }, this.opts.fsyncIntervalMs);
    fsyncTimer.unref();
    this.timers.push(fsyncTimer);
    if (opts.signingKey) {
      const cpTimer = setInterval(() => this.checkpoint().catch(() => undefined), this.opts.checkpointIntervalMs);
      cpTimer.unref();
      this.timers.push(cpTimer);
    }
  }

  /**
   * Opens (or creates, mode 0600) the audit file, resuming its chain: from its last
   * complete line, else from the newest rotated sibling, else from the genesis.
   * A torn last line is set aside and recorded as a `system` event.
   */
  static async open(opts: AuditWriterOptions): Promise<AuditWriter> {
    let head: ChainHead | undefined;
    let torn: ReturnType<typeof resumeFile>['torn'];
    let continues: string | undefined;
    if (opts.file !== '-') {
      ({ head, torn } = resumeFile(opts.file));
      if (!head) {
        const rotated = newestRotated(opts.file);
        if (rotated) {
          head = resumeFile(rotated).head;
          continues = rotated;
        }
      }
    }
    const w = new AuditWriter(opts, head);
    if (continues) w.markContinuation(continues);
    const cpFile = opts.checkpointFile ?? (opts.file === '-' ? false : `${opts.file}.checkpoints`);
    if (opts.signingKey && cpFile) w.checkpointHandle = await open(cpFile, 'a', 0o600);
    if (torn) {
      w.appendOwn({
        event: 'audit-torn-line-set-aside',
        annotations: {
          'agentgate.dev/torn-offset': String(torn.offset),
          'agentgate.dev/torn-bytes': String(torn.bytes),
          'agentgate.dev/torn-sha256': torn.sha256,
          'agentgate.dev/torn-file': torn.setAsideFile,
        },
      });
    }
    return w;
  }

  /** The chain head: the last record's seq and hash. */
  get head(): ChainHead {
    return { seq: this.seq, hash: this.lastHash };
  }

  health(): AuditHealth {
    const reason = this.refusal();
    return reason === undefined ? { ok: true } : { ok: false, reason };
  }

  append(event: AuditEventInput): AuditRecord {
    this.usable();
    const mask = this.opts.mask;
    let record: AuditRecord;
    if (typeof mask === 'function') {
      const masked = mask(event);
      if (masked === null || typeof masked !== 'object' || Array.isArray(masked)) {
        throw new TypeError('audit: the masker must return the event as an object');
      }
      record = this.write(masked as AuditEventInput, this.plain);
    } else {
      if (event === null || typeof event !== 'object' || Array.isArray(event)) throw new TypeError('audit: an event must be an object');
      // Options that follow the policy: what the walk cached under the old ones goes.
      if (mask.refresh?.()) this.masked = new RecordJson(mask);
      if (event.protocol === 'postgres' && typeof event.statement === 'string' && mask.statement) event = withStatement(event, mask.statement(event.statement));
      record = this.write(event, this.masked, mask);
    }
    this.sinceCheckpoint++;
    if (this.opts.signingKey && this.sinceCheckpoint >= this.opts.checkpointEvery) this.checkpoint().catch(() => undefined);
    return record;
  }

  /** Resolves when every record appended so far is written and fsynced. */
  async flush(): Promise<void> {
    const target = this.seq;
    while (this.syncedSeq < target) {
      if (this.failure) throw new AuditUnavailableError(`audit trail unavailable: ${this.failure.message}`);
      if (!this.syncing) {
        this.syncing = this.syncOnce().finally(() => {
          this.syncing = undefined;
        });
      }
      await this.syncing;
    }
    await Promise.all(this.retiring);
  }

  /** Takes a checkpoint now if anything was appended since the last one (no-op without a signing key). */
  async checkpoint(): Promise<void> {
    if (!this.opts.signingKey) return;
    while (this.checkpointing) await this.checkpointing;
    if (this.sinceCheckpoint === 0 || this.failure) return;
    this.checkpointing = this.takeCheckpoint(this.opts.signingKey).finally(() => {
      this.checkpointing = undefined;
    });
    return this.checkpointing;
  }

  /** Writes a final checkpoint, fsyncs and closes. Appending afterwards throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const t of this.timers) clearInterval(t);
    clearInterval(this.recoverTimer);
    try {
      await this.checkpoint();
      await this.flush();
    } finally {
      this.closed = true;
      await this.checkpointHandle?.close();
      await this.retire(this.dest);
    }
  }

  /** Why append() would refuse now, or undefined. */
  private refusal(own = false): string | undefined {
    if (this.closed) return 'audit trail closed';
    if (this.failure) return `audit trail unavailable: ${this.failure.message}`;
    // The writer's own records (rotation marker, checkpoint, torn line) are few and keep the chain verifiable.
    const backlog = this.backlog();
    if (!own && backlog > this.opts.maxBacklogBytes) {
      return `audit trail unavailable: ${backlog} bytes wait to be written (limit ${this.opts.maxBacklogBytes}); the disk is not keeping up`;
    }
    return undefined;
  }

  private usable(own = false): void {
    const reason = this.refusal(own);
    if (reason === undefined) return;
    if (!this.closed && !this.failure) auditErrors.inc({ op: 'backlog' });
    throw new AuditUnavailableError(reason);
  }

  /** Records the writer's own events: not masked field by field (they carry hashes and JWS that a PAN scan could alter). */
  private appendOwn(fields: Partial<AuditEventInput>): AuditRecord {
    this.usable(true);
    const time = this.now().toISOString();
    const event: AuditEventInput = {
      auditID: randomUUID(),
      stage: 'ResponseComplete',
      requestReceivedTimestamp: time,
      stageTimestamp: time,
      protocol: 'system',
      ...fields,
    };
    return this.write(event, this.plain);
  }

  /** Serializes with `json` (masking, if it masks), chains and queues one record; `masker` is json's, for the general path. */
  private write(event: AuditEventInput, json: RecordJson, masker?: AuditMasker): AuditRecord {
    if (this.opts.rotateBytes && this.regularFile && this.fileBytes >= this.opts.rotateBytes) this.rotate();
    const seq = this.seq + 1;
    const prevHash = this.lastHash;
    let open = json.recordOpen(event, seq, prevHash);
    let bytes: number | undefined;
    if (open !== undefined) {
      countPans('value', json.pans);
      if (json.ascii) bytes = open.length + HASH_TAIL_BYTES;
    } else {
      // The general path, for what the single walk does not model (see record-json.ts).
      let body: object = event;
      if (masker) {
        const masked = masker.value(event) as Record<string, unknown>;
        if (isEventId(event.auditID)) masked.auditID = event.auditID;
        body = masked;
      }
      open = canonicalBody(body, seq, prevHash).slice(0, -1);
    }
    // The walk built `open` as a rope of ~100 concatenations; V8 flattens a rope in
    // place on charCodeAt, so hashing and the destination's join each copy one flat
    // string instead of walking the rope twice (measured alone: a third less CPU for
    // serialize + hash + join).
    open.charCodeAt(0);
    const hash = linkHash(prevHash, `${open}}`);
    const line = `${open},"hash":"${hash}"}\n`;
    this.dest.write(line, bytes);
    this.seq = seq;
    this.lastHash = hash;
    auditEventsWritten.inc();
    if (this.seq - this.syncedSeq >= this.opts.fsyncEvery && !this.syncing) this.flush().catch(() => undefined);
    return lazyRecord(line, seq, prevHash, hash);
  }

  private openDestination(fd?: number): void {
    if (fd === undefined) {
      fd = 1;
      if (this.regularFile) fd = openSync(this.opts.file, 'a', 0o600);
    }
    if (this.regularFile) this.fileBytes = fstatSync(fd).size;
    const dest = new AppendDestination(fd);
    dest.on('error', (err: Error) => this.fail(err, 'write'));
    dest.onQueued = (n) => {
      this.fileBytes += n;
      auditBytesWritten.inc(n);
    };
    this.dest = dest;
  }

  private rotate(): void {
    const old = this.dest;
    const renamed = rotatedName(this.opts.file, this.seq);
    renameSync(this.opts.file, renamed);
    this.openDestination();
    // Pending writes of the old destination still land in the renamed file (same inode).
    this.retiring.push(this.retire(old));
    this.markContinuation(renamed);
  }

  /**
   * A file that does not start at seq 1 starts with this record, so that verify
   * can tell a rotated file from one whose first lines were cut off.
   */
  private markContinuation(previousFile: string): void {
    this.appendOwn({ event: CONTINUATION_EVENT, annotations: { 'agentgate.dev/previous-file': path.basename(previousFile) } });
  }

  /** Bytes not yet written, over the live destination and any still draining after a rotation. */
  private backlog(): number {
    let n = this.dest.pendingBytes;
    for (const d of this.retired) n += d.pendingBytes;
    return n;
  }

  /** Writes out and fsyncs what dest holds, then closes its file (never stdout). */
  private retire(dest: AppendDestination): Promise<void> {
    this.retired.add(dest);
    return new Promise((resolve) => {
      dest.flush(() => {
        this.retired.delete(dest);
        if (dest.fd !== 1 && dest.fd !== 2) closeSync(dest.fd);
        resolve();
      });
    });
  }

  private syncOnce(): Promise<void> {
    const target = this.seq;
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      this.dest.flush((err) => {
        const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
        if (err && !(code && !this.regularFile && UNSYNCABLE.has(code))) {
          this.fail(err, 'fsync');
          reject(new AuditUnavailableError(`audit trail unavailable: ${err.message}`));
          return;
        }
        auditFsyncSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        if (target > this.syncedSeq) this.syncedSeq = target;
        resolve();
      });
    });
  }

  private async takeCheckpoint(key: SigningKey): Promise<void> {
    const { seq, hash } = this.head;
    this.sinceCheckpoint = 0;
    try {
      // Only what is on disk is signed: a checkpoint must never name a record a crash could still lose.
      await this.flush();
      const jws = await signCheckpoint(key, { seq, hash, time: this.now().toISOString() });
      if (this.checkpointHandle) {
        await this.checkpointHandle.appendFile(`${jws}\n`);
        await this.checkpointHandle.datasync();
      }
      if (this.closed || this.failure) return;
      this.appendOwn({ event: CHECKPOINT_EVENT, checkpoint: jws });
      auditCheckpoints.inc();
    } catch (err) {
      auditErrors.inc({ op: 'checkpoint' });
      throw err;
    }
  }

  private fail(err: Error, op: 'write' | 'fsync'): void {
    auditErrors.inc({ op });
    if (this.failure) return;
    this.failure = err;
    // Drop what cannot be written: retrying a full or broken disk forever would
    // only grow memory; every later append() is refused until recover() succeeds.
    this.dest.destroy();
    this.opts.onError?.(err);
    if (this.regularFile && !this.closed) {
      this.recoverTimer = setInterval(() => this.recover(), this.opts.recoverIntervalMs);
      this.recoverTimer.unref();
    }
  }

  /**
   * One recovery attempt of a broken file sink: resume the chain from the file's
   * last complete line, then write and fsync the recovery record synchronously
   * (it is one small line, once per interval), and only then accept appends.
   * Any error leaves the sink broken for the next attempt.
   */
  private recover(): void {
    const failure = this.failure;
    if (!failure || this.closed) return;
    let fd: number | undefined;
    let sizeBefore = -1;
    try {
      const { head, torn } = resumeFile(this.opts.file, this.now());
      fd = openSync(this.opts.file, 'a', 0o600);
      sizeBefore = fstatSync(fd).size;
      let seq = head?.seq ?? 0;
      let prevHash = head?.hash ?? GENESIS_HASH;
      // A live file emptied by a rotation just before the failure: its first record must name the rotated file.
      const rotated = head === undefined && sizeBefore === 0 ? newestRotated(this.opts.file) : undefined;
      if (rotated !== undefined) ({ seq, hash: prevHash } = resumeFile(rotated).head ?? { seq, hash: prevHash });
      const lost = this.seq - seq;
      const time = this.now().toISOString();
      const annotations: Record<string, string> = { 'agentgate.dev/reason': failure.message, 'agentgate.dev/lost-records': String(lost) };
      if (lost > 0) annotations['agentgate.dev/lost-seqs'] = `${seq + 1}-${this.seq}`;
      if (torn) annotations['agentgate.dev/torn-file'] = torn.setAsideFile;
      const events: Partial<AuditEventInput>[] = [];
      if (rotated !== undefined) events.push({ event: CONTINUATION_EVENT, annotations: { 'agentgate.dev/previous-file': path.basename(rotated) } });
      events.push({ event: RECOVERED_EVENT, annotations });
      let text = '';
      for (const fields of events) {
        const ev: AuditEventInput = { auditID: randomUUID(), stage: 'ResponseComplete', requestReceivedTimestamp: time, stageTimestamp: time, protocol: 'system', ...fields };
        const open = canonicalBody(ev, ++seq, prevHash).slice(0, -1);
        prevHash = linkHash(prevHash, `${open}}`);
        text += `${open},"hash":"${prevHash}"}\n`;
      }
      const bytes = Buffer.from(text);
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
      fsyncSync(fd);
      try {
        if (this.dest.fd !== 1 && this.dest.fd !== 2) closeSync(this.dest.fd);
      } catch {
        // the broken descriptor may already be unusable
      }
      this.seq = seq;
      this.syncedSeq = seq;
      this.lastHash = prevHash;
      this.openDestination(fd);
      fd = undefined;
      this.failure = undefined;
      clearInterval(this.recoverTimer);
      this.recoverTimer = undefined;
      auditEventsWritten.inc(events.length);
      this.opts.onRecover?.(failure.message);
    } catch {
      // Still unwritable. Take back a partial line so the file keeps ending at a complete record.
      if (fd !== undefined) {
        try {
          if (sizeBefore >= 0) ftruncateSync(fd, sizeBefore);
        } catch {
          // resumeFile sets a torn tail aside on the next attempt
        }
        closeSync(fd);
      }
    }
  }
}

/** The event with its statement as the masker records it (a shallow copy only when that differs). */
function withStatement(event: AuditEventInput, m: MaskedStatement): AuditEventInput {
  if (m.truncated === undefined) return m.statement === event.statement ? event : { ...event, statement: m.statement };
  return {
    ...event,
    statement: m.statement,
    annotations: { ...event.annotations, 'agentgate.dev/statement-bytes': String(m.truncated.bytes), 'agentgate.dev/statement-sha256': m.truncated.sha256 },
  };
}

/**
 * The sealed record as written, parsed from its line on first use. Producers on
 * the hot path ignore what append() returns (only tests and tools look), so the
 * parse (a few µs per KB) is paid only by those who read it; seq, prevHash and
 * hash are answered without parsing.
 */
function lazyRecord(line: string, seq: number, prevHash: string, hash: string): AuditRecord {
  let parsed: Record<PropertyKey, unknown> | undefined;
  const rec = () => (parsed ??= JSON.parse(line) as Record<PropertyKey, unknown>);
  // The target holds the chain fields, so util.inspect (which shows a proxy's target) shows them.
  return new Proxy({ seq, prevHash, hash } as Record<PropertyKey, unknown>, {
    get: (_t, p) => (parsed === undefined && (p === 'seq' || p === 'prevHash' || p === 'hash') ? { seq, prevHash, hash }[p] : rec()[p]),
    has: (_t, p) => p in rec(),
    ownKeys: () => Reflect.ownKeys(rec()),
    getOwnPropertyDescriptor: (_t, p) => Reflect.getOwnPropertyDescriptor(rec(), p),
    set: (_t, p, v) => Reflect.set(rec(), p, v),
    deleteProperty: (_t, p) => Reflect.deleteProperty(rec(), p),
    defineProperty: (_t, p, d) => Reflect.defineProperty(rec(), p, d),
  }) as unknown as AuditRecord;
}
