// Where a writer picks the chain up again after a restart or a crash: the last
// complete line of the file. Bytes after the last '\n' are a torn write (the
// process or machine died mid-line); they are set aside into a side file,
// truncated away, and the writer records that with a `system` event, so the chain
// stays verifiable and nothing that was on disk is silently lost.

import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { isHash } from './chain.js';

export interface ChainHead {
  seq: number;
  hash: string;
}

export interface TornTail {
  /** Offset where the torn bytes started (the file now ends there). */
  offset: number;
  bytes: number;
  sha256: string;
  /** Where the torn bytes were put. */
  setAsideFile: string;
}

export class AuditResumeError extends Error {
  override name = 'AuditResumeError';
}

const CHUNK = 64 * 1024;

/** The last complete line (without '\n') and where the torn part, if any, begins. */
function inspectTail(fd: number, size: number): { last?: { text: string; offset: number }; tornStart: number } {
  let pos = size;
  let tail = Buffer.alloc(0);
  let tornStart = -1;
  while (true) {
    if (pos > 0) {
      const len = Math.min(CHUNK, pos);
      const chunk = Buffer.alloc(len);
      readSync(fd, chunk, 0, len, pos - len);
      pos -= len;
      tail = Buffer.concat([chunk, tail]);
    }
    const lastNl = tail.lastIndexOf(0x0a);
    if (lastNl === -1) {
      if (pos > 0) continue;
      return { tornStart: 0 };
    }
    tornStart = pos + lastNl + 1;
    const prevNl = lastNl > 0 ? tail.lastIndexOf(0x0a, lastNl - 1) : -1;
    if (prevNl === -1 && pos > 0) continue;
    return { last: { text: tail.subarray(prevNl + 1, lastNl).toString('utf8'), offset: pos + prevNl + 1 }, tornStart };
  }
}

function parseHead(text: string, file: string, offset: number): ChainHead {
  let rec: { seq?: unknown; hash?: unknown } | undefined;
  try {
    rec = JSON.parse(text) as typeof rec;
  } catch {
    // reported below
  }
  if (!rec || typeof rec.seq !== 'number' || !Number.isSafeInteger(rec.seq) || rec.seq < 1 || !isHash(rec.hash)) {
    throw new AuditResumeError(
      `${file}: the last complete line (byte ${offset}) is not an audit record, so the chain cannot be resumed; ` +
        `inspect it with \`agentgate audit verify ${file}\` and move the file aside`,
    );
  }
  return { seq: rec.seq, hash: rec.hash };
}

/**
 * Prepares an audit file for appending: sets aside and truncates a torn tail and
 * returns the chain head to continue from (undefined for an empty file).
 */
export function resumeFile(file: string, now: Date = new Date()): { head?: ChainHead; torn?: TornTail } {
  let fd: number;
  try {
    fd = openSync(file, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return {};
    const { last, tornStart } = inspectTail(fd, size);
    let torn: TornTail | undefined;
    if (tornStart < size) {
      const bytes = Buffer.alloc(size - tornStart);
      readSync(fd, bytes, 0, bytes.length, tornStart);
      const setAsideFile = `${file}.torn-${now.toISOString().replace(/[:.]/g, '')}`;
      writeFileSync(setAsideFile, bytes, { mode: 0o600, flag: 'wx' });
      ftruncateSync(fd, tornStart);
      fsyncSync(fd);
      torn = { offset: tornStart, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), setAsideFile };
    }
    return { head: last ? parseHead(last.text, file, last.offset) : undefined, torn };
  } finally {
    closeSync(fd);
  }
}

/** Rotated files are `<file>.<12-digit last seq>`; they sort by name in chain order. */
export function rotatedName(file: string, lastSeq: number): string {
  return `${file}.${String(lastSeq).padStart(12, '0')}`;
}

/** The newest rotated sibling of file, if any. */
export function newestRotated(file: string): string | undefined {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const re = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\d{12}$`);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => re.test(n)).sort();
  } catch {
    return undefined;
  }
  return names.length ? path.join(dir, names[names.length - 1]) : undefined;
}
