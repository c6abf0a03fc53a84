import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openAuditWriter } from '../../../core/audit/open.js';
import { verifyAuditFiles } from '../../../core/audit/verify.js';
import { generateKeyFiles, loadVerifyingKey } from '../../../core/audit/keys.js';
import type { CheckpointAlg, VerifyingKey } from '../../../core/audit/keys.js';
import { peekCheckpoint } from '../../../core/audit/checkpoint.js';
import { recordHash } from '../../../core/audit/chain.js';
import type { AuditRecord } from '../../../core/audit/types.js';
import { event, lineOf, tempDir } from './fixture.js';

const TIME = '2026-11-23T12:00:00.000Z';

describe('audit checkpoints signed with jose', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  let cpFile: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'audit.log');
    cpFile = `${file}.checkpoints`;
  });
  afterEach(() => cleanup());

  /** seq 1–3 events, 4 checkpoint of 3, 5–6 events, 7 checkpoint of 6 (on close). */
  async function writeSigned(alg: CheckpointAlg = 'EdDSA'): Promise<VerifyingKey> {
    const keys = await generateKeyFiles(path.join(dir, 'keys'), alg);
    const w = await openAuditWriter({ file, signingKeyFile: keys.privateFile, checkpointEvery: 1000, now: () => new Date(TIME) });
    for (let i = 1; i <= 3; i++) w.append(event(i));
    await w.checkpoint();
    w.append(event(5));
    w.append(event(6));
    await w.close();
    return loadVerifyingKey(keys.publicFile);
  }

  const lines = () => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');

  it('writes each checkpoint as a chained record and to the side file, over the seq and hash of what was on disk', async () => {
    const key = await writeSigned();
    const recs = lines().map((l) => JSON.parse(l) as AuditRecord);
    expect(recs.map((r) => r.event ?? null)).to.deep.equal([null, null, null, 'checkpoint', null, null, 'checkpoint']);
    const side = readFileSync(cpFile, 'utf8').trimEnd().split('\n');
    expect(side).to.deep.equal([recs[3].checkpoint, recs[6].checkpoint]);
    expect(peekCheckpoint(side[0])).to.deep.equal({ seq: 3, hash: recs[2].hash, time: TIME });
    expect(peekCheckpoint(side[1])).to.deep.equal({ seq: 6, hash: recs[5].hash, time: TIME });
    const header = JSON.parse(Buffer.from(side[0].split('.')[0], 'base64url').toString()) as Record<string, string>;
    expect(header).to.deep.equal({ alg: 'EdDSA', kid: key.kid, typ: 'agentgate-audit-checkpoint' });
  });

  it('verifies with the public key and names the key that signed', async () => {
    const key = await writeSigned();
    const r = await verifyAuditFiles({ files: [file], key });
    expect(r.summary).to.equal(`ok: 7 events, chain intact, last checkpoint seq 6 signed by ${key.kid}`);
    expect(r.warnings).to.deep.equal([]);
  });

  it('works with ES256 keys too', async () => {
    const key = await writeSigned('ES256');
    expect((await verifyAuditFiles({ files: [file], key })).summary).to.equal(`ok: 7 events, chain intact, last checkpoint seq 6 signed by ${key.kid}`);
  });

  it('detects whole lines cut off the tail: the side file names a seq beyond the end', async () => {
    const key = await writeSigned();
    writeFileSync(file, lines().slice(0, 4).map((l) => `${l}\n`).join(''));
    const r = await verifyAuditFiles({ files: [file], key });
    expect(r.ok).to.equal(false);
    expect(r.problem).to.equal(
      `truncated: checkpoint ${cpFile}:2 (signed ${TIME}) covers seq 6, but the files end at seq 4 (${file}:4): 2 events are missing from the tail`,
    );
  });

  it('reports events after the last checkpoint as unprotected when the tail and the side file are both gone', async () => {
    const key = await writeSigned();
    rmSync(cpFile);
    writeFileSync(file, lines().slice(0, 6).map((l) => `${l}\n`).join(''));
    const r = await verifyAuditFiles({ files: [file], key });
    expect(r.summary).to.equal(`ok: 6 events, chain intact, last checkpoint seq 3 signed by ${key.kid}`);
    expect(r.warnings).to.deep.equal(['2 events after the last checkpoint (seq 3) are not protected by a signature']);
  });

  it('detects a chain rewritten from a record onwards with every hash recomputed', async () => {
    const key = await writeSigned();
    const recs = lines().map((l) => JSON.parse(l) as AuditRecord);
    let prev = recs[0].hash;
    const rewritten = recs.map((r, i) => {
      if (i === 0) return r;
      const changed: AuditRecord = { ...r, prevHash: prev, ...(i === 1 ? { statement: 'select 1' } : {}) };
      changed.hash = recordHash(changed);
      prev = changed.hash;
      return changed;
    });
    writeFileSync(file, rewritten.map(lineOf).join(''));
    const expected = `modified: checkpoint ${file}:4 signs seq 3 with hash ${recs[2].hash.slice(0, 12)}…, but ${file}:3 has hash ${rewritten[2].hash.slice(0, 12)}…: the chain was rewritten`;
    expect((await verifyAuditFiles({ files: [file], key })).problem).to.equal(expected);
    // Without --key the checkpoint payloads are still compared (unsigned), which catches a careless rewrite.
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(expected);
  });

  it('rejects checkpoints signed by another key', async () => {
    const key = await writeSigned();
    const other = await generateKeyFiles(path.join(dir, 'other'));
    const r = await verifyAuditFiles({ files: [file], key: await loadVerifyingKey(other.publicFile) });
    expect(r.problem).to.equal(`checkpoint: ${file}:4: signed by key ${key.kid}, not by ${other.kid}`);
  });

  it('rejects a checkpoint whose signature was tampered with', async () => {
    const key = await writeSigned();
    rmSync(cpFile);
    const recs = lines().map((l) => JSON.parse(l) as AuditRecord);
    const [h, p, s] = recs[3].checkpoint!.split('.');
    const flipped = `${h}.${p}.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
    const forged: AuditRecord = { ...recs[3], checkpoint: flipped };
    forged.hash = recordHash(forged);
    // Keep the chain valid so the signature is the only thing wrong.
    const rest = recs.slice(4);
    let prev = forged.hash;
    for (const r of rest) {
      r.prevHash = prev;
      r.hash = recordHash(r);
      prev = r.hash;
    }
    writeFileSync(file, [...recs.slice(0, 3), forged, ...rest].map(lineOf).join(''));
    expect((await verifyAuditFiles({ files: [file], key })).problem).to.equal(`checkpoint: ${file}:4: signature does not verify with key ${key.kid}`);
  });

  async function waitForCheckpoints(n: number): Promise<AuditRecord[]> {
    for (let tries = 0; tries < 200; tries++) {
      const cps = lines().map((l) => JSON.parse(l) as AuditRecord).filter((r) => r.event === 'checkpoint');
      if (cps.length >= n) return cps;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no ${n} checkpoints after 5 s`);
  }

  it('takes a checkpoint by itself every N events', async () => {
    const keys = await generateKeyFiles(path.join(dir, 'keys'));
    const w = await openAuditWriter({ file, signingKeyFile: keys.privateFile, checkpointEvery: 5, checkpointIntervalMs: 3_600_000 });
    for (let i = 1; i <= 5; i++) w.append(event(i));
    const [cp] = await waitForCheckpoints(1);
    expect(peekCheckpoint(cp.checkpoint!)?.seq).to.equal(5);
    await w.close();
  });

  it('takes a checkpoint by itself every T milliseconds when something was appended', async () => {
    const keys = await generateKeyFiles(path.join(dir, 'keys'));
    const w = await openAuditWriter({ file, signingKeyFile: keys.privateFile, checkpointEvery: 1_000_000, checkpointIntervalMs: 50 });
    w.append(event(1));
    const [cp] = await waitForCheckpoints(1);
    expect(peekCheckpoint(cp.checkpoint!)?.seq).to.equal(1);
    await w.close();
    // Nothing appended after the close-time checkpoint check: no checkpoint of a checkpoint.
    expect(lines()).to.have.length(2);
  });

  it('accepts the private key file for verification, using its public half', async () => {
    const key = await writeSigned();
    const fromPrivate = await loadVerifyingKey(path.join(dir, 'keys', 'audit-signing.key.pem'));
    expect(fromPrivate.kid).to.equal(key.kid);
    expect((await verifyAuditFiles({ files: [file], key: fromPrivate })).ok).to.equal(true);
  });
});
