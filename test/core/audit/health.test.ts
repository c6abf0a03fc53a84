import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openAuditWriter, AuditUnavailableError } from '../../../core/audit/open.js';
import type { AuditWriter } from '../../../core/audit/open.js';
import { verifyAuditFiles } from '../../../core/audit/verify.js';
import type { AuditRecord } from '../../../core/audit/types.js';
import { event, tempDir } from './fixture.js';

const readRecords = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRecord);

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('audit writer health', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'audit.log');
  });
  afterEach(() => cleanup());

  it('is ok while the writer can append', async () => {
    const w = await openAuditWriter({ file });
    w.append(event(1));
    expect(w.health()).to.deep.equal({ ok: true });
    await w.close();
  });

  it('reports a backlog over its limit as the reason appends are refused, and is ok again once it is written', async () => {
    const w = await openAuditWriter({ file, maxBacklogBytes: 1 });
    w.append(event(1));
    const h = w.health();
    expect(h.ok).to.equal(false);
    expect(h.ok === false && h.reason).to.match(/^audit trail unavailable: \d+ bytes wait to be written \(limit 1\); the disk is not keeping up$/);
    expect(() => w.append(event(2))).to.throw(AuditUnavailableError);
    await w.flush();
    expect(w.health()).to.deep.equal({ ok: true });
    await w.close();
  });

  it('reports a write error with the error as the reason', async () => {
    const w = await openAuditWriter({ file: '/dev/full', recoverIntervalMs: 60_000 });
    w.append(event(1));
    await w.flush().catch(() => undefined);
    expect(w.health()).to.deep.equal({ ok: false, reason: 'audit trail unavailable: ENOSPC: no space left on device, write' });
    expect(() => w.append(event(2))).to.throw(AuditUnavailableError, 'audit trail unavailable: ENOSPC: no space left on device, write');
    await w.close().catch(() => undefined);
  });

  it('is not ok once closed', async () => {
    const w = await openAuditWriter({ file });
    await w.close();
    expect(w.health()).to.deep.equal({ ok: false, reason: 'audit trail closed' });
  });
});

describe('audit writer on a real full disk (tmpfs)', function () {
  this.timeout(60_000);
  let mnt: string;
  let cleanup: () => void;
  let mounted = false;

  before(function () {
    if (process.getuid?.() !== 0) {
      this.skip(); // mounting a tmpfs needs root: run the suite as root (CI does) to exercise a real full disk
    }
    ({ dir: mnt, cleanup } = tempDir('agentgate-audit-tmpfs-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt], { stdio: 'pipe' });
      mounted = true;
    } catch (err) {
      cleanup();
      throw new Error(`root, but mounting a tmpfs failed (a container without CAP_SYS_ADMIN?): ${(err as Error).message}`);
    }
  });
  after(() => {
    if (mounted) execFileSync('umount', [mnt]);
    cleanup?.();
  });

  /** Fills the file system up to its last few bytes. */
  function fill(name: string): string {
    const filler = path.join(mnt, name);
    mkdirSync(path.dirname(filler), { recursive: true });
    // Whole 4 KiB pages until the kernel refuses, then single bytes for what is left.
    const page = Buffer.alloc(4096, 0x78);
    const parts: Buffer[] = [];
    for (;;) {
      try {
        writeFileSync(filler, Buffer.concat([...parts, page]));
        parts.push(page);
      } catch {
        break;
      }
    }
    return filler;
  }

  let w: AuditWriter | undefined;
  afterEach(async () => {
    await w?.close().catch(() => undefined);
    w = undefined;
    rmSync(path.join(mnt, 'audit.log'), { force: true });
    for (const f of ['filler']) rmSync(path.join(mnt, f), { force: true });
  });

  it('refuses appends while the disk is full, says so in health(), and recovers by itself once there is space', async () => {
    const file = path.join(mnt, 'audit.log');
    const errors: string[] = [];
    const recovered: string[] = [];
    w = await openAuditWriter({ file, recoverIntervalMs: 50, onError: (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message), onRecover: (r) => recovered.push(r) });
    w.append(event(1));
    await w.flush();
    const filler = fill('filler');
    // Appends are queued until the write fails; the first refused one shows the disk is full.
    let seq = 1;
    let refused: Error | undefined;
    while (refused === undefined) {
      try {
        w.append(event(++seq, { statement: `select ${'x'.repeat(2000)} from orders where id = ${seq}` }));
        await w.flush();
      } catch (err) {
        refused = err as Error;
      }
    }
    expect(refused).to.be.instanceOf(AuditUnavailableError);
    expect(errors).to.deep.equal(['ENOSPC']);
    expect(w.health()).to.deep.equal({ ok: false, reason: 'audit trail unavailable: ENOSPC: no space left on device, write' });
    expect(() => w!.append(event(1000))).to.throw(AuditUnavailableError, 'audit trail unavailable: ENOSPC: no space left on device, write');
    // Still full: recovery attempts fail and health stays not ok.
    await new Promise((r) => setTimeout(r, 300));
    expect(w.health().ok).to.equal(false);

    rmSync(filler);
    await until('recovery', () => w!.health().ok);
    expect(recovered).to.have.length(1);
    const after = w.append(event(1001));
    await w.close();
    w = undefined;

    const recs = readRecords(file);
    const lost = recs.find((r) => r.event === 'audit-trail-recovered')!;
    expect(lost.protocol).to.equal('system');
    expect(lost.annotations!['agentgate.dev/reason']).to.equal('ENOSPC: no space left on device, write');
    // Every record that reached the disk is kept; the marker counts the ones that did not
    // (appended, then dropped with the write that failed) and the numbers they had.
    const count = Number(lost.annotations!['agentgate.dev/lost-records']);
    expect(count).to.be.at.least(1);
    expect(lost.annotations!['agentgate.dev/lost-seqs']).to.equal(`${lost.seq}-${lost.seq + count - 1}`);
    expect(recs[recs.length - 1].auditID).to.equal(event(1001).auditID);
    expect(after.seq).to.equal(lost.seq + 1);
    expect((await verifyAuditFiles({ files: [file] })).summary).to.match(/^ok: \d+ events, chain intact, no checkpoint$/);
  });
});
