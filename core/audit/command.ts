// `agentgate audit verify|keygen|append`.

import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { UsageError, parseFlags } from '../cli/command.js';
import type { Command } from '../cli/command.js';
import { KeyFileError, generateKeyFiles, loadVerifyingKey } from './keys.js';
import type { CheckpointAlg, VerifyingKey } from './keys.js';
import { verifyAuditFiles } from './verify.js';
import { openAuditWriter } from './open.js';
import type { AuditEventInput } from './types.js';

const USAGE = `Usage:
  agentgate audit verify FILE... [--key PUBKEY] [--checkpoints FILE]...
  agentgate audit keygen --out DIR [--alg EdDSA|ES256] [--force]
  agentgate audit append -f FILE [--key PRIVKEY] [--keep last4|bin+last4]

verify   Checks the hash chain of audit files (a rotated series in chain order,
         e.g. audit.log.* audit.log) and reports the first modified, missing,
         reordered, inserted or truncated record with its file and line.
         With --key, every signed checkpoint must verify with PUBKEY (PEM or JWK;
         a private key is accepted too) and match the record it names; a
         checkpoint naming a seq beyond the end reports a cut tail. Checkpoints
         are read from the stream, from FILE.checkpoints beside each FILE and
         from every --checkpoints FILE.
         Prints "ok: N events, chain intact, …" and exits 0, or prints the break
         and exits 1. Warnings (unsigned tail, chain not starting at seq 1) go to stderr.
keygen   Writes a checkpoint signing key pair into DIR: audit-signing.key.pem
         (PKCS#8, mode 0600) and audit-signing.pub.pem (SPKI). Ed25519 by default.
append   Reads audit events as JSON lines from stdin and appends them to FILE:
         masked, chained, fsynced, and checkpointed when --key is given.
         Missing auditID, stage, timestamps and protocol are filled in.

Examples:
  agentgate audit keygen --out ./keys
  echo '{"protocol":"postgres","statement":"select * from cards"}' | agentgate audit append -f audit.log --key keys/audit-signing.key.pem
  agentgate audit verify audit.log --key keys/audit-signing.pub.pem`;

async function loadKey(file: string): Promise<VerifyingKey> {
  try {
    return await loadVerifyingKey(file);
  } catch (err) {
    if (err instanceof KeyFileError) throw new UsageError(`--key ${err.message}`);
    throw err;
  }
}

async function verify(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { key: { type: 'string' }, checkpoints: { type: 'string', multiple: true } },
    { positionals: { min: 1, name: 'FILE (the audit files to verify)' } },
  );
  const key = values.key === undefined ? undefined : await loadKey(values.key);
  let result;
  try {
    result = await verifyAuditFiles({ files: positionals, key, checkpointFiles: values.checkpoints });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code && e.path) {
      process.stdout.write(`missing: cannot read ${e.path} (${e.code})\n`);
      return 1;
    }
    throw err;
  }
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(`${result.summary}\n`);
  return result.ok ? 0 : 1;
}

async function keygen(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { out: { type: 'string' }, alg: { type: 'string' }, force: { type: 'boolean' } }, { positionals: { max: 0 } });
  if (!values.out) throw new UsageError('missing --out DIR');
  const alg = (values.alg ?? 'EdDSA') as CheckpointAlg;
  if (alg !== 'EdDSA' && alg !== 'ES256') throw new UsageError(`--alg must be EdDSA or ES256, not '${alg}'`);
  try {
    const { privateFile, publicFile, kid } = await generateKeyFiles(values.out, alg, values.force ?? false);
    process.stdout.write(`private key: ${privateFile} (mode 0600, for the writer)\npublic key:  ${publicFile} (for audit verify --key)\nkey id:      ${kid}\n`);
    return 0;
  } catch (err) {
    if (err instanceof KeyFileError) {
      process.stderr.write(`agentgate audit keygen: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function fillEvent(v: Record<string, unknown>): AuditEventInput {
  const now = new Date().toISOString();
  return {
    auditID: randomUUID(),
    stage: 'ResponseComplete',
    requestReceivedTimestamp: now,
    stageTimestamp: now,
    protocol: 'system',
    ...v,
  } as AuditEventInput;
}

async function append(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    { file: { type: 'string', short: 'f' }, key: { type: 'string' }, keep: { type: 'string' } },
    { positionals: { max: 0 } },
  );
  if (!values.file) throw new UsageError('missing -f FILE');
  if (values.keep !== undefined && values.keep !== 'last4' && values.keep !== 'bin+last4') {
    throw new UsageError(`--keep must be last4 or bin+last4, not '${values.keep}'`);
  }
  let writer;
  try {
    writer = await openAuditWriter({
      file: values.file,
      signingKeyFile: values.key,
      maskOptions: values.keep ? { keep: values.keep as 'last4' | 'bin+last4' } : undefined,
    });
  } catch (err) {
    if (err instanceof KeyFileError) throw new UsageError(`--key ${err.message}`);
    throw err;
  }
  let n = 0;
  let lineNo = 0;
  let bad: string | undefined;
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    lineNo++;
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      bad = `stdin:${lineNo}: not valid JSON (${(err as Error).message}); the ${n} events before it were appended`;
      break;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      bad = `stdin:${lineNo}: an audit event must be a JSON object; the ${n} events before it were appended`;
      break;
    }
    writer.append(fillEvent(v as Record<string, unknown>));
    n++;
  }
  await writer.close();
  if (bad) {
    process.stderr.write(`agentgate audit append: ${bad}\n`);
    return 1;
  }
  process.stderr.write(`appended ${n} event${n === 1 ? '' : 's'} to ${values.file}, chain at seq ${writer.head.seq}\n`);
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = { verify, keygen, append };

export const command: Command = {
  name: 'audit',
  summary: 'verify the hash chain and signed checkpoints of audit logs',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === undefined) throw new UsageError('missing subcommand: verify, keygen or append');
    const fn = SUBCOMMANDS[sub];
    if (!fn) throw new UsageError(`unknown subcommand '${sub}': use verify, keygen or append`);
    return fn(rest);
  },
};
