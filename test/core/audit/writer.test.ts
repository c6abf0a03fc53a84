import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { appendFileSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { openAuditWriter, AuditUnavailableError } from '../../../core/audit/open.js';
import { verifyAuditFiles } from '../../../core/audit/verify.js';
import { GENESIS_HASH, recordHash } from '../../../core/audit/chain.js';
import { registry } from '../../../core/metrics.js';
import type { AuditRecord } from '../../../core/audit/types.js';
import { event, tempDir } from './fixture.js';

const readRecords = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRecord);

async function metricValue(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

describe('audit writer', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'audit.log');
  });
  afterEach(() => cleanup());

  it('chains every appended event from the genesis and returns the record it wrote', async () => {
    const w = await openAuditWriter({ file });
    const returned = [1, 2, 3].map((i) => w.append(event(i)));
    await w.close();
    const recs = readRecords(file);
    expect(recs).to.deep.equal(returned);
    expect(recs.map((r) => r.seq)).to.deep.equal([1, 2, 3]);
    expect(recs[0].prevHash).to.equal(GENESIS_HASH);
    expect(recs[1].prevHash).to.equal(recs[0].hash);
    for (const r of recs) expect(recordHash(r)).to.equal(r.hash);
    expect((await verifyAuditFiles({ files: [file] })).summary).to.equal('ok: 3 events, chain intact, no checkpoint');
  });

  it('writes each line as exactly the event: no pino level, time, pid, hostname or msg', async () => {
    const w = await openAuditWriter({ file });
    w.append(event(1, { level: 'Metadata', kind: 'Event', apiVersion: 'audit.k8s.io/v1' }));
    await w.close();
    const line = readFileSync(file, 'utf8');
    expect(line.endsWith('}\n')).to.equal(true);
    expect(line.split('\n')).to.have.length(2);
    const rec = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(rec).sort()).to.deep.equal(
      ['apiVersion', 'auditID', 'connection', 'decision', 'hash', 'kind', 'level', 'prevHash', 'protocol', 'requestReceivedTimestamp', 'seq', 'stage', 'stageTimestamp', 'statement'].sort(),
    );
    expect(rec.level).to.equal('Metadata');
  });

  it('masks every string before it reaches the file: statement, error message, nested request object', async () => {
    const w = await openAuditWriter({ file });
    const rec = w.append(
      event(1, {
        statement: "select * from cards where pan = '4111 1111 1111 1111'",
        responseStatus: { code: 400, message: 'ERROR: invalid input syntax for type bigint: "5555555555554444"' },
        objectRef: { resource: 'configmaps', namespace: 'payments', name: 'card-378282246310005' },
        requestObject: { data: { note: 'charge 4111-1111-1111-1111 now', nested: [{ pan: 5555555555554444, cvv: '123' }] } },
      }),
    );
    await w.close();
    const text = readFileSync(file, 'utf8');
    for (const raw of ['4111 1111 1111 1111', '5555555555554444', '378282246310005', '4111-1111-1111-1111']) expect(text).not.to.include(raw);
    const [onDisk] = readRecords(file);
    expect(onDisk).to.deep.equal(rec);
    expect(onDisk.statement).to.equal("select * from cards where pan = '**** **** **** 1111'");
    expect(onDisk.responseStatus?.message).to.equal('ERROR: invalid input syntax for type bigint: "************4444"');
    expect(onDisk.objectRef?.name).to.equal('card-***********0005');
    expect(onDisk.requestObject).to.deep.equal({ data: { note: 'charge ****-****-****-1111 now', nested: [{ pan: '************4444', cvv: '***' }] } });
    expect(recordHash(onDisk)).to.equal(onDisk.hash);
  });

  it('counts exactly the bytes it writes, ASCII and non-ASCII lines alike', async () => {
    const before = await metricValue('agentgate_audit_bytes_total');
    const w = await openAuditWriter({ file });
    w.append(event(1));
    w.append(event(2, { statement: "select * from customers where name = 'Zoë Ørsted 🙂'" }));
    w.append(event(3, { requestObject: { note: 'card 4111 1111 1111 1111, naïve' } }));
    await w.close();
    expect((await metricValue('agentgate_audit_bytes_total')) - before).to.equal(statSync(file).size);
  });

  it('leaves the appended event as the caller built it', async () => {
    const w = await openAuditWriter({ file });
    const ev = event(1, { statement: "where pan = '4111111111111111'", requestObject: { cvv: '123' } });
    const copy = structuredClone(ev);
    w.append(ev);
    await w.close();
    expect(ev).to.deep.equal(copy);
  });

  it('flush() resolves once everything appended is on disk', async () => {
    const w = await openAuditWriter({ file, fsyncIntervalMs: 60_000, fsyncEvery: 1_000_000 });
    for (let i = 1; i <= 500; i++) w.append(event(i));
    await w.flush();
    expect(readRecords(file)).to.have.length(500);
    await w.close();
  });

  it('resumes the chain from the last line when reopened', async () => {
    const w1 = await openAuditWriter({ file });
    w1.append(event(1));
    w1.append(event(2));
    await w1.close();
    const w2 = await openAuditWriter({ file });
    expect(w2.head.seq).to.equal(2);
    const r3 = w2.append(event(3));
    await w2.close();
    expect(r3.seq).to.equal(3);
    expect(r3.prevHash).to.equal(readRecords(file)[1].hash);
    expect((await verifyAuditFiles({ files: [file] })).summary).to.equal('ok: 3 events, chain intact, no checkpoint');
  });

  it('after a crash mid-line, sets the torn bytes aside, truncates them and records that as a system event', async () => {
    const w1 = await openAuditWriter({ file });
    w1.append(event(1));
    w1.append(event(2));
    await w1.close();
    const intact = readFileSync(file);
    const torn = '{"auditID":"00000000-0000-4000-8000-000000000003","stage":"Respo';
    appendFileSync(file, torn);
    expect((await verifyAuditFiles({ files: [file] })).problem).to.equal(`truncated: ${file}:3 is a torn line (${torn.length} bytes without a newline)`);

    const w2 = await openAuditWriter({ file });
    const r4 = w2.append(event(4));
    await w2.close();
    const recs = readRecords(file);
    expect(readFileSync(file).subarray(0, intact.length).equals(intact)).to.equal(true);
    expect(recs.map((r) => r.seq)).to.deep.equal([1, 2, 3, 4]);
    const note = recs[2];
    expect(note).to.include({ protocol: 'system', event: 'audit-torn-line-set-aside' });
    const setAside = note.annotations!['agentgate.dev/torn-file'];
    expect(note.annotations).to.deep.equal({
      'agentgate.dev/torn-offset': String(intact.length),
      'agentgate.dev/torn-bytes': String(torn.length),
      'agentgate.dev/torn-sha256': createHash('sha256').update(torn).digest('hex'),
      'agentgate.dev/torn-file': setAside,
    });
    expect(path.dirname(setAside)).to.equal(dir);
    expect(readFileSync(setAside, 'utf8')).to.equal(torn);
    expect(statSync(setAside).mode & 0o777).to.equal(0o600);
    expect(r4.prevHash).to.equal(note.hash);
    expect((await verifyAuditFiles({ files: [file] })).summary).to.equal('ok: 4 events, chain intact, no checkpoint');
  });

  it('resumes a chain whose writer was killed with SIGKILL while appending', async () => {
    const child = spawn(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-child.js'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const w = await openAuditWriter({ file });
    const killedAt = w.head.seq;
    expect(killedAt).to.be.greaterThan(0);
    expect(w.append(event(0)).seq).to.equal(killedAt + 1);
    await w.close();
    const r = await verifyAuditFiles({ files: [file] });
    expect(r.ok, r.summary).to.equal(true);
    expect(readFileSync(file, 'utf8')).not.to.include('4111111111111111');
  });

  it('refuses to resume when the last complete line is not an audit record', async () => {
    writeFileSync(file, 'not json at all\n');
    let err: Error | undefined;
    await openAuditWriter({ file }).catch((e: Error) => (err = e));
    expect(err?.message).to.equal(
      `${file}: the last complete line (byte 0) is not an audit record, so the chain cannot be resumed; inspect it with \`agentgate audit verify ${file}\` and move the file aside`,
    );
  });

  it('creates the audit file with mode 0600', async () => {
    const w = await openAuditWriter({ file });
    w.append(event(1));
    await w.close();
    expect(statSync(file).mode & 0o777).to.equal(0o600);
  });

  it('fails closed: after a write error append() throws and the error is counted', async () => {
    const before = await metricValue('agentgate_audit_errors_total', { op: 'write' });
    const errors: Error[] = [];
    const w = await openAuditWriter({ file: '/dev/full', onError: (e) => errors.push(e) });
    w.append(event(1));
    let flushErr: Error | undefined;
    await w.flush().catch((e: Error) => (flushErr = e));
    expect(flushErr).to.be.instanceOf(AuditUnavailableError);
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).to.deep.equal(['ENOSPC']);
    expect(() => w.append(event(2))).to.throw(AuditUnavailableError, 'audit trail unavailable: ENOSPC: no space left on device, write');
    expect(await metricValue('agentgate_audit_errors_total', { op: 'write' })).to.be.greaterThan(before);
    let closeErr: Error | undefined;
    await w.close().catch((e: Error) => (closeErr = e));
    expect(closeErr).to.be.instanceOf(AuditUnavailableError);
  });

  it('refuses appends while more than maxBacklogBytes wait to be written, and accepts them again once written', async () => {
    const before = await metricValue('agentgate_audit_errors_total', { op: 'backlog' });
    const w = await openAuditWriter({ file, maxBacklogBytes: 1 });
    w.append(event(1));
    expect(() => w.append(event(2))).to.throw(AuditUnavailableError, /^audit trail unavailable: \d+ bytes wait to be written \(limit 1\); the disk is not keeping up$/);
    expect(await metricValue('agentgate_audit_errors_total', { op: 'backlog' })).to.equal(before + 1);
    await w.flush();
    expect(w.append(event(3)).seq).to.equal(2);
    await w.close();
    expect((await verifyAuditFiles({ files: [file] })).summary).to.equal('ok: 2 events, chain intact, no checkpoint');
  });

  it('counts the records it writes', async () => {
    const before = await metricValue('agentgate_audit_events_total');
    const w = await openAuditWriter({ file });
    for (let i = 1; i <= 4; i++) w.append(event(i));
    await w.close();
    expect(await metricValue('agentgate_audit_events_total')).to.equal(before + 4);
  });

  it('rotates by size, continues the chain in the new file and resumes from the newest rotated file', async () => {
    const w = await openAuditWriter({ file, rotateBytes: 2000 });
    for (let i = 1; i <= 20; i++) w.append(event(i));
    await w.close();
    const rotated = readdirSync(dir).filter((n) => /^audit\.log\.\d{12}$/.test(n)).sort();
    expect(rotated.length).to.be.greaterThan(2);
    const series = [...rotated.map((n) => path.join(dir, n)), file];
    // 20 events plus one continuation marker per rotation.
    expect((await verifyAuditFiles({ files: series })).summary).to.equal(`ok: ${20 + rotated.length} events, chain intact, no checkpoint`);
    // Each rotated file is named by the last seq it holds.
    for (const n of rotated) {
      const recs = readRecords(path.join(dir, n));
      expect(recs[recs.length - 1].seq).to.equal(Number(n.slice(-12)));
    }

    // Every file after the first starts with a marker naming the file it continues.
    for (let k = 1; k < series.length; k++) {
      expect(readRecords(series[k])[0]).to.deep.include({ protocol: 'system', event: 'audit-file-continued', annotations: { 'agentgate.dev/previous-file': path.basename(series[k - 1]) } });
    }
    // So the live file alone verifies, with a warning that earlier events are elsewhere.
    const alone = await verifyAuditFiles({ files: [file] });
    expect(alone.ok).to.equal(true);
    expect(alone.warnings).to.have.length(1);

    // A crash right after a rotation leaves an empty live file: the chain continues from the rotated one.
    writeFileSync(file, '');
    const newest = series[series.length - 2];
    const last = readRecords(newest);
    const w2 = await openAuditWriter({ file });
    await w2.close();
    const resumed = readRecords(file);
    expect(resumed).to.have.length(1);
    expect(resumed[0]).to.deep.include({ seq: last[last.length - 1].seq + 1, prevHash: last[last.length - 1].hash, event: 'audit-file-continued' });
    expect((await verifyAuditFiles({ files: [...series.slice(0, -1), file] })).ok).to.equal(true);
  });

  describe('the event id', () => {
    // A random UUID whose first groups form a Luhn-valid 16-digit window.
    const UUID = '09941512-9858-4449-ae30-ffe22df24ad6';

    it('keeps a UUID event id as the producer wrote it, where PAN masking would change it', async () => {
      const w = await openAuditWriter({ file });
      w.append({ ...event(1), auditID: UUID });
      await w.close();
      expect(readRecords(file)[0]!.auditID).to.equal(UUID);
    });

    it('keeps it on the general path too (an event with a Date)', async () => {
      const w = await openAuditWriter({ file });
      w.append({ ...event(1), auditID: UUID, requestObject: { when: new Date(0) } });
      await w.close();
      expect(readRecords(file)[0]!.auditID).to.equal(UUID);
    });

    it('masks an event id that is not a UUID like any other string', async () => {
      const w = await openAuditWriter({ file });
      w.append({ ...event(1), auditID: '4111 1111 1111 1111' });
      await w.close();
      expect(readRecords(file)[0]!.auditID).to.equal('**** **** **** 1111');
    });
  });
});
