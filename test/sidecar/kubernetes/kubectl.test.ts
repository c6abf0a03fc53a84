// The Kubernetes proxy as kubectl sees it: kubectl 1.33 (newest here, exec over
// WebSocket) and 1.27 (oldest, exec over SPDY/3.1) with a kubeconfig built from the
// identity files the proxy wrote. API server: the DOUBLE (test/support/kube-api-double.ts).

import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { KUBECTL_NEW, KUBECTL_OLD, PAN, PAN_MASKED, startHarness } from './harness.js';
import type { Harness } from './harness.js';
import type { AuditRecord } from '../../../core/audit/types.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

function seed(h: Harness): void {
  h.double.put('namespaces', { metadata: { name: 'payments' } });
  h.double.put('configmaps', { metadata: { name: 'cards', namespace: 'payments' }, data: { note: `card ${PAN} on file`, cvv: '123' } });
  h.double.put('secrets', {
    metadata: { name: 'card-secret', namespace: 'payments' },
    type: 'Opaque',
    data: { pan: b64(PAN), cvv: b64('123'), greeting: b64('hello') },
  });
  h.double.put('pods', { metadata: { name: 'debug-0', namespace: 'payments' } });
  h.double.put('pods', { metadata: { name: 'web-0', namespace: 'payments' } });
}

const FORBIDDEN_DELETE =
  "Error from server (Forbidden): configmaps \"cards\" is forbidden: denied by rule 'no-deletes' of policy 'kube-test' (agents never delete): it does not allow system:serviceaccount:payments:agent to delete configmaps 'cards' in namespace 'payments'; to get access, ask the owners of policy 'kube-test' to change that rule (`agentgate policy explain` shows every rule that matched)\n";

for (const [label, kubectl] of [['kubectl 1.33', KUBECTL_NEW], ['kubectl 1.27', KUBECTL_OLD]] as const) {
  describe(`kubernetes proxy with ${label} (API server: the double)`, function () {
    this.timeout(60_000);
    let h: Harness;
    before(async () => {
      h = await startHarness();
      seed(h);
    });
    after(async () => h?.stop());

    it('gets a ConfigMap with the PAN masked and the cvv starred', async () => {
      const r = await h.kubectl(kubectl, ['get', 'configmap', 'cards', '-o', 'json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout).data).to.deep.equal({ note: `card ${PAN_MASKED} on file`, cvv: '***' });
    });

    it('gets a Secret with base64 values decoded, masked and re-encoded', async () => {
      const r = await h.kubectl(kubectl, ['get', 'secret', 'card-secret', '-o', 'json']);
      expect(r.code, r.stderr).to.equal(0);
      const data = JSON.parse(r.stdout).data as Record<string, string>;
      expect(Object.fromEntries(Object.entries(data).map(([k, v]) => [k, unb64(v)]))).to.deep.equal({ pan: PAN_MASKED, cvv: '***', greeting: 'hello' });
      expect(r.stdout).not.to.contain(b64(PAN));
    });

    it('lists ConfigMaps as a table', async () => {
      const r = await h.kubectl(kubectl, ['get', 'configmaps']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.split('\n')[0]).to.match(/^NAME\s+AGE$/);
      expect(r.stdout).to.match(/^cards\s+\d+m$/m);
    });

    it('lists Secrets as JSON with every value masked', async () => {
      const r = await h.kubectl(kubectl, ['get', 'secrets', '-o', 'json']);
      expect(r.code, r.stderr).to.equal(0);
      const items = JSON.parse(r.stdout).items as { data: Record<string, string> }[];
      expect(items.map((i) => unb64(i.data.pan!))).to.deep.equal([PAN_MASKED]);
    });

    it("refuses a delete with the rule's message, printed by kubectl as the API server's own Forbidden", async () => {
      const r = await h.kubectl(kubectl, ['delete', 'configmap', 'cards']);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.equal(FORBIDDEN_DELETE);
      expect(h.double.get('configmaps', 'payments', 'cards')).to.not.equal(undefined);
    });

    it('prints pod logs with PANs masked', async () => {
      h.double.appendLog('payments', 'debug-0', `charged card ${PAN} amount 12.00`);
      const r = await h.kubectl(kubectl, ['logs', 'debug-0']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(`charged card ${PAN_MASKED} amount 12.00\n`);
    });

    it('watches a ConfigMap and sees a later change masked', async () => {
      const child = spawn(kubectl, ['get', 'configmap', 'cards', '--watch', '--output-watch-events', '-o', 'json'], {
        env: { PATH: process.env.PATH ?? '', HOME: h.dir, KUBECONFIG: h.kubeconfig },
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      try {
        // kubectl prints the object it GETs first, then watches from resourceVersion=0: a change
        // made before that watch reaches the API server would arrive as its initial ADDED.
        await waitFor(() => out.includes('"ADDED"') && h.double.openWatches > 0);
        h.double.put('configmaps', { metadata: { name: 'cards', namespace: 'payments' }, data: { note: `new card 5500 0000 0000 0004` } });
        await waitFor(() => out.includes('"MODIFIED"'));
      } finally {
        child.kill();
      }
      const events = out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: { data: Record<string, string> } });
      expect(events.map((e) => [e.type, e.object.data.note])).to.deep.equal([
        ['ADDED', `card ${PAN_MASKED} on file`],
        ['MODIFIED', 'new card **** **** **** 0004'],
      ]);
      expect(out).not.to.contain('5500 0000 0000 0004');
    });
  });
}

describe('kubectl exec through the kubernetes proxy (API server: the double)', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
    seed(h);
  });
  after(async () => h?.stop());

  it('kubectl 1.33 execs over WebSocket with stdout masked and the session recorded', async () => {
    const r = await h.kubectl(KUBECTL_NEW, ['exec', 'debug-0', '--', 'echo', 'pay', 'with', PAN]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(`pay with ${PAN_MASKED}\n`);
    const done = await lastSession(h);
    expect(done.annotations?.['agentgate.dev/session-file']).to.be.a('string');
    const cast = (await readFile(done.annotations!['agentgate.dev/session-file']!, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect((cast[0] as { version: number; command: string }).version).to.equal(2);
    expect((cast[0] as { command: string }).command).to.equal(`echo pay with ${PAN}`.replace(PAN, PAN_MASKED));
    expect(cast.slice(1).map((e) => (e as unknown[]).slice(1))).to.deep.equal([['o', `pay with ${PAN_MASKED}\n`], ['m', 'exit 0']]);
  });

  it('kubectl 1.33 passes stdin through and records it masked', async () => {
    const r = await h.kubectl(KUBECTL_NEW, ['exec', '-i', 'debug-0', '--', 'cat'], { input: `card ${PAN}\n` });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(`card ${PAN_MASKED}\n`);
    expect(h.double.execs.at(-1)).to.deep.include({ command: ['cat'], protocol: 'v5.channel.k8s.io', stdin: `card ${PAN}\n` });
    const files = await readdir(h.sessionDir);
    const texts = await Promise.all(files.map((f) => readFile(path.join(h.sessionDir, f), 'utf8')));
    const cat = texts.find((t) => t.includes('"command":"cat"'))!;
    expect(cat).to.contain(`"i","card ${PAN_MASKED}\\n"`);
    expect(texts.join('')).not.to.contain(PAN);
  });

  it('kubectl 1.33 reports a non-zero exit code from the container', async () => {
    const r = await h.kubectl(KUBECTL_NEW, ['exec', 'debug-0', '--', 'false']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal('command terminated with exit code 1\n');
  });

  it('kubectl 1.33 is refused an exec that needs approval, with the rule named', async () => {
    const r = await h.kubectl(KUBECTL_NEW, ['exec', 'web-0', '--', 'echo', 'hi']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(
      "Error from server (Forbidden): pods \"web-0\" is forbidden: approval required: rule 'exec-needs-approval' of policy 'kube-test' requires a human approval for system:serviceaccount:payments:agent to create pods/exec 'web-0' in namespace 'payments'; no approval service is configured for this sidecar, so the request was not sent (fail closed)\n",
    );
    expect(h.double.execs.map((e) => e.command[1])).not.to.include('hi');
  });

  it('kubectl 1.27 execs over SPDY/3.1 with stdout masked frame by frame and the session recorded', async () => {
    const r = await h.kubectl(KUBECTL_OLD, ['exec', 'debug-0', '--', 'echo', 'spdy', PAN]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(`spdy ${PAN_MASKED}\n`);
    expect(h.double.execs.at(-1)).to.deep.include({ command: ['echo', 'spdy', PAN], protocol: 'SPDY/3.1+v4.channel.k8s.io' });
    const done = await lastSession(h);
    const cast = (await readFile(done.annotations!['agentgate.dev/session-file']!, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as unknown[]);
    expect(cast.slice(1).map((e) => e.slice(1))).to.deep.equal([['o', `spdy ${PAN_MASKED}\n`], ['m', 'exit 0']]);
  });

  it('kubectl 1.27 passes stdin over SPDY/3.1 and gets its echo masked', async () => {
    const r = await h.kubectl(KUBECTL_OLD, ['exec', '-i', 'debug-0', '--', 'cat'], { input: `card ${PAN}\n` });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(`card ${PAN_MASKED}\n`);
    expect(h.double.execs.at(-1)?.stdin).to.equal(`card ${PAN}\n`);
  });

  it('kubectl 1.27 reports a non-zero exit code over SPDY/3.1', async () => {
    const r = await h.kubectl(KUBECTL_OLD, ['exec', 'debug-0', '--', 'false']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal('command terminated with exit code 1\n');
  });

  it('kubectl 1.27 is refused an exec that needs approval, with the rule named', async () => {
    const r = await h.kubectl(KUBECTL_OLD, ['exec', 'web-0', '--', 'echo', 'hi']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^Error from server \(Forbidden\): pods "web-0" is forbidden: approval required: rule 'exec-needs-approval'/);
  });
});

/**
 * The ResponseComplete event of the latest exec session. kubectl exits when it has the
 * exit status; the proxy completes the session (recording closed, event appended) when
 * both connections are closed, a moment later.
 */
async function lastSession(h: Harness): Promise<AuditRecord> {
  const started = (await h.events()).filter((e) => e.objectRef?.subresource === 'exec' && e.stage === 'ResponseStarted').at(-1)!;
  let done: AuditRecord | undefined;
  await waitFor(() => done !== undefined, 10_000, async () => {
    done = (await h.events()).find((e) => e.auditID === started.auditID && e.stage === 'ResponseComplete');
  });
  return done!;
}

async function waitFor(cond: () => boolean, ms = 30_000, poll?: () => Promise<void>): Promise<void> {
  const until = Date.now() + ms;
  while ((await poll?.(), !cond())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}
