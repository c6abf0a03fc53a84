import { expect } from 'chai';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { seal, recordHash } from '../../../core/audit/chain.js';
import { verifyAuditFiles } from '../../../core/audit/verify.js';
import type { AuditRecord } from '../../../core/audit/types.js';
import { chain, event, lineOf, tempDir, writeLines } from './fixture.js';

describe('audit verify: the hash chain', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'audit.log');
  });
  afterEach(() => cleanup());

  it('accepts an intact chain and counts its records', async () => {
    writeLines(file, chain(1, 5).map(lineOf));
    const r = await verifyAuditFiles({ files: [file] });
    expect(r.summary).to.equal('ok: 5 events, chain intact, no checkpoint');
    expect(r).to.include({ ok: true, events: 5, firstSeq: 1, lastSeq: 5 });
    expect(r.warnings).to.deep.equal([]);
  });

  it('reports a changed field as a modified record at its line', async () => {
    const recs = chain(1, 5);
    recs[2] = { ...recs[2], statement: 'select id from orders where id = 999' };
    writeLines(file, recs.map(lineOf));
    const r = await verifyAuditFiles({ files: [file] });
    expect(r.ok).to.equal(false);
    expect(r.problem).to.equal(`modified: ${file}:3 (seq 3): the record does not match its hash`);
  });

  it('reports a record whose hash was recomputed after a change: its successor no longer links to it', async () => {
    const recs = chain(1, 5);
    const changed = { ...recs[2], decision: { action: 'deny' as const, rule: 'x', reason: 'x', enforced: true } };
    recs[2] = { ...changed, hash: recordHash(changed) };
    writeLines(file, recs.map(lineOf));
    const r = await verifyAuditFiles({ files: [file] });
    expect(r.problem).to.equal(`modified: ${file}:3 (seq 3) was changed or replaced: ${file}:4 (seq 4) does not link to it`);
  });

  it('reports a deleted record as missing, before the line where the gap shows', async () => {
    const recs = chain(1, 5);
    writeLines(file, [recs[0], recs[1], recs[3], recs[4]].map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`missing: seq 3 is missing before ${file}:3`);
  });

  it('reports several deleted records with their range', async () => {
    const recs = chain(1, 6);
    writeLines(file, [recs[0], recs[4], recs[5]].map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`missing: seq 2..4 (3 events) are missing before ${file}:2`);
  });

  it('reports two swapped records as reordered, naming where the expected one is', async () => {
    const recs = chain(1, 5);
    writeLines(file, [recs[0], recs[1], recs[3], recs[2], recs[4]].map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(
      `reordered: ${file}:3 has seq 4 where seq 3 was expected; seq 3 is at ${file}:4`,
    );
  });

  it('reports a record moved backwards as reordered', async () => {
    const recs = chain(1, 5);
    writeLines(file, [recs[0], recs[1], recs[2], recs[4], recs[3]].map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(
      `reordered: ${file}:4 has seq 5 where seq 4 was expected; seq 4 is at ${file}:5`,
    );
  });

  it('reports a forged record inserted with a valid hash of its own as inserted', async () => {
    const recs = chain(1, 4);
    const forged = seal(event(99, { statement: 'select 1' }), 3, recs[1].hash);
    writeLines(file, [recs[0], recs[1], forged, recs[2], recs[3]].map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(
      `inserted: ${file}:3 (seq 3) is not part of the chain: ${file}:4 links past it`,
    );
  });

  it('reports a torn last line (no newline) as truncated', async () => {
    const recs = chain(1, 3);
    const torn = lineOf(recs[2]).slice(0, 40);
    writeLines(file, [lineOf(recs[0]), lineOf(recs[1]), torn]);
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`truncated: ${file}:3 is a torn line (40 bytes without a newline)`);
  });

  it('reports a line that is not JSON and one that is not an audit record', async () => {
    const recs = chain(1, 3);
    writeLines(file, [lineOf(recs[0]), '{"seq": 2,\n', lineOf(recs[2])]);
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`modified: ${file}:2 is not valid JSON`);
    writeLines(file, [lineOf(recs[0]), '{"seq":2}\n']);
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(
      `modified: ${file}:2 is not an audit record (seq, prevHash or hash missing or malformed)`,
    );
  });

  it('requires the genesis prevHash on seq 1', async () => {
    const forged = seal(event(1), 1, 'f'.repeat(64));
    writeLines(file, [lineOf(forged)]);
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`modified: ${file}:1 (seq 1): prevHash is not the genesis hash`);
  });

  it('follows the chain across a rotated series given in order', async () => {
    const recs = chain(1, 7, undefined, [4]);
    const a = writeLines(path.join(dir, 'audit.log.000000000003'), recs.slice(0, 3).map(lineOf));
    const b = writeLines(path.join(dir, 'audit.log'), recs.slice(3).map(lineOf));
    expect((await verifyAuditFiles({ files: [a, b] })).summary).to.equal('ok: 7 events, chain intact, no checkpoint');
  });

  it('reports a missing file of a rotated series as missing records', async () => {
    const recs = chain(1, 9, undefined, [4, 7]);
    const a = writeLines(path.join(dir, 'a'), recs.slice(0, 3).map(lineOf));
    writeLines(path.join(dir, 'b'), recs.slice(3, 6).map(lineOf));
    const c = writeLines(path.join(dir, 'c'), recs.slice(6).map(lineOf));
    expect((await verifyAuditFiles({ files: [a, c] })).problem).to.equal(`missing: seq 4..6 (3 events) are missing before ${c}:1`);
  });

  it('warns, but accepts, a series that starts with a rotated file after seq 1', async () => {
    const recs = chain(1, 5, undefined, [3]);
    writeLines(file, recs.slice(2).map(lineOf));
    const r = await verifyAuditFiles({ files: [file] });
    expect(r.summary).to.equal('ok: 3 events, chain intact, no checkpoint');
    expect(r.warnings).to.deep.equal([`${file}:1 starts at seq 3: the events before it are not in the files given`]);
  });

  it('reports the first lines cut off a file as missing: only a rotated file may start after seq 1', async () => {
    const recs = chain(1, 5);
    writeLines(file, recs.slice(2).map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(
      `missing: seq 1..2 are missing before ${file}:1, which is not the start of a rotated file`,
    );
  });

  it('reports the first break when there are several', async () => {
    const recs: AuditRecord[] = chain(1, 6);
    recs[1] = { ...recs[1], rows: 7 };
    recs[4] = { ...recs[4], rows: 8 };
    writeLines(file, recs.map(lineOf));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`modified: ${file}:2 (seq 2): the record does not match its hash`);
  });

  it('reads an empty line as a modification', async () => {
    const recs = chain(1, 2);
    writeLines(file, [lineOf(recs[0])]);
    appendFileSync(file, '\n');
    appendFileSync(file, lineOf(recs[1]));
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`modified: ${file}:2 is an empty line`);
  });
});
