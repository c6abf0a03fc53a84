// `agentgate audit verify`: walks the chain across files in the order given (a
// rotated series continues the chain) and reports the FIRST break with file and
// line, classified as what most likely happened:
//   modified  a record's content no longer matches its hash, or a record was
//             replaced (its successor no longer links to it)
//   missing   seq numbers are skipped (records deleted)
//   reordered seq numbers go backwards, or a skipped seq appears later
//   inserted  a record sits between two records that link to each other
//   truncated a torn last line, or a signed checkpoint names a seq beyond the end
//   checkpoint a checkpoint whose signature does not verify with --key
// Signed checkpoints come from the stream itself and from `<FILE>.checkpoints`
// side files (and --checkpoints); each must match the hash of the record it names.

import { existsSync } from 'node:fs';
import { CHECKPOINT_EVENT, CONTINUATION_EVENT, peekCheckpoint, verifyCheckpoint } from './checkpoint.js';
import type { CheckpointClaims } from './checkpoint.js';
import { GENESIS_HASH, isHash, recordHash } from './chain.js';
import type { VerifyingKey } from './keys.js';
import { readLines } from './lines.js';
import type { Line } from './lines.js';

export interface VerifyOptions {
  files: string[];
  key?: VerifyingKey;
  /** Extra checkpoint side files; `<FILE>.checkpoints` of every FILE is read when it exists. */
  checkpointFiles?: string[];
}

export interface VerifyResult {
  ok: boolean;
  /** Records checked before the first break (all of them when ok). */
  events: number;
  firstSeq?: number;
  lastSeq?: number;
  /** The first break, one line, e.g. `modified: audit.log:7 (seq 7): the record does not match its hash`. */
  problem?: string;
  warnings: string[];
  /** The newest checkpoint within the files' range. */
  lastCheckpoint?: { seq: number; time: string; where: string; kid?: string };
  /** One line: the `ok: …` summary or the problem. */
  summary: string;
}

interface Checkpoint {
  where: string;
  claims?: CheckpointClaims;
  /** Set when --key was given and the signature or payload is bad. */
  error?: string;
  kid?: string;
  inStream: boolean;
}

interface Rec {
  seq: number;
  prevHash: string;
  hash: string;
  event?: unknown;
  checkpoint?: unknown;
}

interface Located {
  file: string;
  line: Line;
}

async function* allLines(files: string[]): AsyncGenerator<Located> {
  for (const file of files) for await (const line of readLines(file)) yield { file, line };
}

function asRecord(v: unknown): Rec | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const r = v as Partial<Rec>;
  if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1 || !isHash(r.prevHash) || !isHash(r.hash)) return undefined;
  return r as Rec;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const short = (h: string) => h.slice(0, 12);

async function judge(jws: string, where: string, key: VerifyingKey | undefined, inStream: boolean): Promise<Checkpoint> {
  if (!key) {
    const claims = peekCheckpoint(jws);
    return claims ? { where, claims, inStream } : { where, error: 'not a checkpoint JWS', inStream };
  }
  const r = await verifyCheckpoint(jws, key);
  return r.ok ? { where, claims: r.claims, kid: r.kid, inStream } : { where, error: r.reason, inStream };
}

/** Pass 1: every checkpoint, judged, from the stream and the side files. */
async function collectCheckpoints(opts: VerifyOptions): Promise<{ inStream: Map<string, Checkpoint>; side: Checkpoint[] }> {
  const inStream = new Map<string, Checkpoint>();
  for await (const { file, line } of allLines(opts.files)) {
    if (!line.text.includes('"checkpoint"')) continue;
    const rec = parse(line.text) as { event?: unknown; checkpoint?: unknown } | undefined;
    if (rec && rec.event === CHECKPOINT_EVENT && typeof rec.checkpoint === 'string') {
      const where = `${file}:${line.no}`;
      inStream.set(where, await judge(rec.checkpoint, where, opts.key, true));
    }
  }
  const sideFiles = new Set(opts.checkpointFiles ?? []);
  for (const f of opts.files) if (existsSync(`${f}.checkpoints`)) sideFiles.add(`${f}.checkpoints`);
  const side: Checkpoint[] = [];
  for (const f of sideFiles) {
    for await (const line of readLines(f)) {
      const jws = line.text.trim();
      if (jws === '') continue;
      side.push(await judge(jws, `${f}:${line.no}`, opts.key, false));
    }
  }
  return { inStream, side };
}

export async function verifyAuditFiles(opts: VerifyOptions): Promise<VerifyResult> {
  const warnings: string[] = [];
  const { inStream, side } = await collectCheckpoints(opts);
  const bySeq = new Map<number, Checkpoint[]>();
  for (const cp of [...inStream.values(), ...side]) {
    if (!cp.claims || cp.error) continue;
    const list = bySeq.get(cp.claims.seq) ?? [];
    list.push(cp);
    bySeq.set(cp.claims.seq, list);
  }

  let events = 0;
  let firstSeq: number | undefined;
  let prev: { seq: number; hash: string; where: string } | undefined;
  let prevPrevHash: string | undefined;
  // Events after the newest checkpoint are not covered by a signature; counted on the way.
  let newestSeq = 0;
  for (const seq of bySeq.keys()) newestSeq = Math.max(newestSeq, seq);
  let unprotected = 0;
  const result = (problem: string): VerifyResult => ({
    ok: false,
    events,
    firstSeq,
    lastSeq: prev?.seq,
    problem,
    warnings,
    summary: problem,
  });

  const it = allLines(opts.files);
  for (let n = await it.next(); !n.done; n = await it.next()) {
    const { file, line } = n.value;
    const where = `${file}:${line.no}`;
    if (!line.terminated) {
      return result(`truncated: ${where} is a torn line (${Buffer.byteLength(line.text)} bytes without a newline)`);
    }
    if (line.text === '') return result(`modified: ${where} is an empty line`);
    const parsed = parse(line.text);
    if (parsed === undefined) return result(`modified: ${where} is not valid JSON`);
    const rec = asRecord(parsed);
    if (!rec) return result(`modified: ${where} is not an audit record (seq, prevHash or hash missing or malformed)`);
    if (recordHash(rec) !== rec.hash) return result(`modified: ${where} (seq ${rec.seq}): the record does not match its hash`);

    if (!prev) {
      firstSeq = rec.seq;
      if (rec.seq === 1 && rec.prevHash !== GENESIS_HASH) return result(`modified: ${where} (seq 1): prevHash is not the genesis hash`);
      if (rec.seq > 1) {
        // Only the writer's rotation starts a file mid-chain, and marks it; anything else lost its head.
        if (rec.event !== CONTINUATION_EVENT) {
          const range = rec.seq === 2 ? 'seq 1 is' : `seq 1..${rec.seq - 1} are`;
          return result(`missing: ${range} missing before ${where}, which is not the start of a rotated file`);
        }
        warnings.push(`${where} starts at seq ${rec.seq}: the events before it are not in the files given`);
      }
    } else {
      const expected = prev.seq + 1;
      if (rec.seq === expected) {
        if (rec.prevHash !== prev.hash) {
          return result(`modified: ${prev.where} (seq ${prev.seq}) was changed or replaced: ${where} (seq ${rec.seq}) does not link to it`);
        }
      } else if (rec.seq > expected) {
        const later = await findSeq(it, expected);
        if (later) return result(`reordered: ${where} has seq ${rec.seq} where seq ${expected} was expected; seq ${expected} is at ${later}`);
        const count = rec.seq - expected;
        const range = count === 1 ? `seq ${expected} is` : `seq ${expected}..${rec.seq - 1} (${count} events) are`;
        return result(`missing: ${range} missing before ${where}`);
      } else if (rec.seq === prev.seq && rec.prevHash === prevPrevHash) {
        return result(`inserted: ${prev.where} (seq ${prev.seq}) is not part of the chain: ${where} links past it`);
      } else {
        return result(`reordered: ${where} has seq ${rec.seq} after seq ${prev.seq} at ${prev.where}`);
      }
    }

    const isCheckpoint = rec.event === CHECKPOINT_EVENT && typeof rec.checkpoint === 'string';
    if (isCheckpoint) {
      const cp = inStream.get(where);
      if (cp?.error) return result(`checkpoint: ${where}: ${cp.error}`);
      if (cp?.claims && cp.claims.seq >= rec.seq) {
        return result(`checkpoint: ${where} (seq ${rec.seq}) signs seq ${cp.claims.seq}, which is not before it`);
      }
    } else if (rec.seq > newestSeq) {
      unprotected++;
    }
    for (const cp of bySeq.get(rec.seq) ?? []) {
      if (cp.claims!.hash !== rec.hash) {
        return result(
          `modified: checkpoint ${cp.where} signs seq ${rec.seq} with hash ${short(cp.claims!.hash)}…, but ${where} has hash ${short(rec.hash)}…: the chain was rewritten`,
        );
      }
    }
    events++;
    prevPrevHash = prev?.hash;
    prev = { seq: rec.seq, hash: rec.hash, where };
  }

  for (const cp of side) {
    if (cp.error) return result(`checkpoint: ${cp.where}: ${cp.error}`);
  }

  // Checkpoints within range, newest first; one beyond the end means a cut tail.
  const lastSeq = prev?.seq ?? 0;
  const usable = [...inStream.values(), ...side].filter((c) => c.claims && (firstSeq === undefined || c.claims.seq >= firstSeq));
  let newest: Checkpoint | undefined;
  for (const c of usable) if (!newest || c.claims!.seq > newest.claims!.seq) newest = c;
  if (newest && newest.claims!.seq > lastSeq) {
    const missing = newest.claims!.seq - lastSeq;
    const signed = opts.key ? `signed ${newest.claims!.time}` : `dated ${newest.claims!.time}, signature not checked`;
    return result(
      `truncated: checkpoint ${newest.where} (${signed}) covers seq ${newest.claims!.seq}, but the files end at ${prev ? `seq ${lastSeq} (${prev.where})` : 'no record'}: ${missing} event${missing === 1 ? ' is' : 's are'} missing from the tail`,
    );
  }

  const cpSeq = newest?.claims!.seq ?? 0;
  if (opts.key) {
    if (unprotected > 0) {
      warnings.push(
        newest
          ? `${unprotected} event${unprotected === 1 ? '' : 's'} after the last checkpoint (seq ${cpSeq}) ${unprotected === 1 ? 'is' : 'are'} not protected by a signature`
          : `no checkpoint: none of the ${unprotected} events is protected by a signature`,
      );
    }
  }
  const lastCheckpoint = newest ? { seq: cpSeq, time: newest.claims!.time, where: newest.where, kid: newest.kid } : undefined;
  let tail: string;
  if (!newest) tail = 'no checkpoint';
  else if (opts.key) tail = `last checkpoint seq ${cpSeq} signed by ${newest.kid}`;
  else tail = `last checkpoint seq ${cpSeq} (signature not checked: no --key)`;
  return {
    ok: true,
    events,
    firstSeq,
    lastSeq: prev?.seq,
    warnings,
    lastCheckpoint,
    summary: `ok: ${events} event${events === 1 ? '' : 's'}, chain intact, ${tail}`,
  };
}

/** Scans the rest of the input for a record with seq; returns where it is. */
async function findSeq(it: AsyncGenerator<Located>, seq: number): Promise<string | undefined> {
  for (let n = await it.next(); !n.done; n = await it.next()) {
    const rec = asRecord(parse(n.value.line.text));
    if (rec?.seq === seq) return `${n.value.file}:${n.value.line.no}`;
  }
  return undefined;
}
