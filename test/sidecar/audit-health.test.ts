// The sidecar's audit health on a real full disk: the audit file on a small tmpfs,
// a real PostgreSQL behind the proxy. Statements are refused while the trail cannot be
// written, readiness says why, and both come back by themselves once there is space.

import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { startHarness } from './postgres/harness.js';
import type { Harness } from './postgres/harness.js';

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('sidecar: PostgreSQL statements and readiness follow the audit sink health (real full tmpfs)', function () {
  this.timeout(120_000);
  let h: Harness | undefined;
  let mnt = '';
  let mounted = false;
  let client: pg.Client | undefined;

  before(async function () {
    if (process.getuid?.() !== 0) this.skip(); // mounting a tmpfs needs root: CI runs the suite as root
    h = await startHarness();
    mnt = path.join(h.dir, 'audit-fs');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt], { stdio: 'pipe' });
    mounted = true;
    h.auditFile = path.join(mnt, 'audit.jsonl');
    await h.startProxy();
    client = new pg.Client(h.clientConfig());
    await client.connect();
  });

  after(async () => {
    await client?.end().catch(() => undefined);
    await h?.stopProxy().catch(() => undefined);
    if (mounted) execFileSync('umount', ['-l', mnt]);
    await h?.stop();
  });

  it('refuses statements with a clear error while the disk is full, and runs them again once there is space', async () => {
    const c = client!;
    expect((await c.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
    const filler = path.join(mnt, 'filler');
    for (let n = 1; ; n++) {
      try {
        fs.writeFileSync(filler, Buffer.alloc(4096 * n, 0x78));
      } catch {
        break;
      }
    }
    // Statements already answered when the write failed were recorded in memory only;
    // from the failure on, every statement is refused.
    let refused: Error | undefined;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      try {
        await c.query(`select ${i}, repeat('x', 1000)`);
      } catch (err) {
        refused = err as Error;
      }
    }
    expect(refused?.message).to.match(/audit trail cannot be written/);
    expect(h!.sidecar!.notReady()).to.deep.equal(['the audit trail cannot be written: audit trail unavailable: ENOSPC: no space left on device, write']);
    // The connection stays usable: the next statement is refused the same way.
    const again = await c.query('select 1').catch((e: Error) => e);
    expect((again as Error).message).to.match(/audit trail cannot be written/);

    fs.rmSync(filler);
    await until('statements accepted again', async () => (await c.query('select 2 as two').then(() => true, () => false)));
    expect(h!.sidecar!.notReady()).to.deep.equal([]);
    expect((await c.query('select 3 as three')).rows).to.deep.equal([{ three: 3 }]);
    await h!.sidecar!.audit.flush();
    const events = fs.readFileSync(h!.auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event?: string; statement?: string });
    expect(events.some((e) => e.event === 'audit-trail-recovered')).to.equal(true);
    expect(events[events.length - 1].statement).to.equal('select 3 as three');
  });
});
