// Where audit lines go (pino's destination before the writer serialized lines
// itself, see writer.ts): an append-only file descriptor with one write in flight
// at a time, each write taking everything queued so far. The first line queued
// waits up to BATCH_MS (or until BATCH_BYTES are queued), so that the records of
// many requests leave in one joined write: one threadpool write per transaction
// cost a PostgreSQL proxy ~13 µs of CPU per transaction (measured with pgbench -S).
// Durability is unchanged: fsync runs every 100 ms anyway (writer.ts), and flush()
// waits for the queue.
//
// Why not pino.destination (sonic-boom): it writes at most `maxWrite` (16 KiB) per
// fs.write and so drains at most 16 KiB per event-loop turn; a busy proxy that
// appends hundreds of records per turn falls behind without bound. Raising
// maxWrite makes each write() measure the UTF-8 length of the pending chunk, which
// turns quadratic under bursts. Here a write takes the whole queue (capped at
// MAX_BATCH), so the drain rate follows the disk, and every byte is counted once.

import { EventEmitter } from 'node:events';
import { fsync, write } from 'node:fs';

const MAX_BATCH = 4 * 1024 * 1024;
const BATCH_MS = 2;
const BATCH_BYTES = 64 * 1024;
// A non-blocking pipe (stdout) that is full answers EAGAIN: wait, then try again.
const EAGAIN_RETRY_MS = 5;

export class AppendDestination extends EventEmitter {
  destroyed = false;
  /** Called with the UTF-8 length of every line queued (size accounting, metrics). */
  onQueued?: (bytes: number) => void;
  private queue: string[] = [];
  private lens: number[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private writing = false;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(readonly fd: number) {
    super();
  }

  /** Bytes queued or being written, not yet on the file. */
  get pendingBytes(): number {
    return this.queuedBytes + this.inFlight;
  }

  /** Queues s; `bytes`, its UTF-8 length, when the caller knows it (an all-ASCII line: its length). */
  write(s: string, bytes = Buffer.byteLength(s)): boolean {
    if (this.destroyed) throw new Error('audit destination destroyed');
    this.queue.push(s);
    this.lens.push(bytes);
    this.queuedBytes += bytes;
    this.onQueued?.(bytes);
    if (!this.writing && !this.scheduled) {
      this.scheduled = true;
      this.timer = setTimeout(this.kick, BATCH_MS);
    } else if (this.scheduled && this.queuedBytes >= BATCH_BYTES && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      setImmediate(this.kick);
    }
    return true;
  }

  private readonly kick = (): void => {
    this.scheduled = false;
    this.timer = undefined;
    if (!this.writing) this.next();
  };

  /** Calls back once everything queued before it is written and fsynced. */
  flush(cb: (err?: Error | null) => void): void {
    // Someone waits for durability: do not sit out the batching delay.
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      setImmediate(this.kick);
    }
    this.whenIdle(() => {
      if (this.destroyed) {
        cb(new Error('audit destination destroyed'));
        return;
      }
      fsync(this.fd, (err) => cb(err));
    });
  }

  /** Stops writing and drops what is queued (after a failure nothing more can be written). */
  destroy(): void {
    this.destroyed = true;
    this.queue = [];
    this.lens = [];
    this.queuedBytes = 0;
    this.inFlight = 0;
    this.release();
  }

  private whenIdle(fn: () => void): void {
    if (!this.writing && this.queue.length === 0) fn();
    else this.idleWaiters.push(fn);
  }

  private release(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private next(): void {
    if (this.destroyed || this.queue.length === 0) {
      this.writing = false;
      this.release();
      return;
    }
    this.writing = true;
    let take = 0;
    let bytes = 0;
    // Whole lines up to MAX_BATCH (at least one), in order.
    while (take < this.queue.length && (take === 0 || bytes < MAX_BATCH)) bytes += this.lens[take++];
    const all = take === this.queue.length;
    const chunk = Buffer.from(all ? this.queue.join('') : this.queue.slice(0, take).join(''));
    this.queue = all ? [] : this.queue.slice(take);
    this.lens = all ? [] : this.lens.slice(take);
    this.queuedBytes -= bytes;
    this.inFlight = bytes;
    this.writeChunk(chunk, 0);
  }

  private writeChunk(chunk: Buffer, offset: number): void {
    write(this.fd, chunk, offset, chunk.length - offset, null, (err, n) => {
      if (err) {
        if ((err.code === 'EAGAIN' || err.code === 'EBUSY') && !this.destroyed) {
          setTimeout(() => this.writeChunk(chunk, offset), EAGAIN_RETRY_MS);
          return;
        }
        this.writing = false;
        this.emit('error', err);
        this.release();
        return;
      }
      this.inFlight -= n;
      this.emit('write', n);
      if (offset + n < chunk.length) this.writeChunk(chunk, offset + n);
      else this.next();
    });
  }
}
