// exec over WebSocket at the frame level, with the `ws` client speaking the Kubernetes
// channel protocols directly (what client-go and client-node do under the hood).
// API server: the DOUBLE (test/support/kube-api-double.ts).

import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { WebSocket } from 'ws';
import { registry } from '../../../core/metrics.js';
import { PAN, PAN_MASKED, TEST_POLICY, startHarness } from './harness.js';
import type { Harness } from './harness.js';

async function open(h: Harness, url: string, protocols: string[]): Promise<{ ws: WebSocket; frames: Buffer[] }> {
  const ca = await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8');
  const ws = new WebSocket(`wss://${h.proxy.address}${url}`, protocols, { ca, headers: { authorization: `Bearer ${await h.token()}` } });
  const frames: Buffer[] = [];
  ws.on('message', (d: Buffer) => frames.push(d));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  return { ws, frames };
}

const frame = (ch: number, s: string) => Buffer.concat([Buffer.of(ch), Buffer.from(s)]);

describe('exec over WebSocket channel protocols (API server: the double)', function () {
  this.timeout(30_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
    h.double.put('namespaces', { metadata: { name: 'payments' } });
    h.double.put('pods', { metadata: { name: 'debug-0', namespace: 'payments' } });
  });
  after(async () => h?.stop());

  it('speaks v4.channel.k8s.io when that is all the client offers, masking stdout and relaying the status', async () => {
    const { ws, frames } = await open(h, `/api/v1/namespaces/payments/pods/debug-0/exec?command=echo&command=${PAN}&stdout=true`, ['v4.channel.k8s.io']);
    expect(ws.protocol).to.equal('v4.channel.k8s.io');
    await new Promise((r) => ws.once('close', r));
    expect(frames.map((f) => [f[0], f.subarray(1).toString()])).to.deep.equal([
      [1, `${PAN_MASKED}\n`],
      [3, '{"metadata":{},"status":"Success"}'],
    ]);
  });

  it('masks a PAN that a container writes across two stdout frames', async () => {
    const { ws, frames } = await open(h, '/api/v1/namespaces/payments/pods/debug-0/exec?command=cat&stdin=true&stdout=true', ['v5.channel.k8s.io']);
    ws.send(frame(0, 'card 41111111'));
    ws.send(frame(0, '11111111 end\n'));
    ws.send(Buffer.of(255, 0)); // v5: close stdin
    await new Promise((r) => ws.once('close', r));
    const stdout = frames.filter((f) => f[0] === 1).map((f) => f.subarray(1).toString()).join('');
    expect(stdout).to.equal(`card ${PAN_MASKED} end\n`);
  });

  it('ends the session, its recording and the open-session gauge when the client drops', async () => {
    const { ws } = await open(h, '/api/v1/namespaces/payments/pods/debug-0/exec?command=cat&stdin=true&stdout=true', ['v5.channel.k8s.io']);
    ws.send(frame(0, 'hello\n'));
    await until(async () => ((await registry.getSingleMetric('agentgate_kube_exec_sessions_open')!.get()).values[0]?.value ?? 0) === 1);
    ws.terminate();
    await until(async () => ((await registry.getSingleMetric('agentgate_kube_exec_sessions_open')!.get()).values[0]?.value ?? 0) === 0);
    const events = await h.events();
    const started = events.filter((e) => e.stage === 'ResponseStarted' && e.objectRef?.subresource === 'exec').at(-1)!;
    const done = events.find((e) => e.stage === 'ResponseComplete' && e.auditID === started.auditID)!;
    expect(done.session).to.equal(started.auditID);
    expect(done.responseStatus).to.deep.equal({ metadata: {}, code: 101 });
    const cast = await readFile(done.annotations!['agentgate.dev/session-file']!, 'utf8');
    expect(cast).to.contain('"i","hello\\n"');
  });

  it('refuses a client that offers only the unframed channel.k8s.io protocols', async () => {
    const err = await open(h, '/api/v1/namespaces/payments/pods/debug-0/exec?command=echo&stdout=true', ['channel.k8s.io', 'v3.channel.k8s.io']).then(
      () => 'opened',
      (e: Error) => e.message,
    );
    expect(err).to.equal('HTTP 400');
  });

  it('refuses port-forward even when the policy allows it, since it cannot mask or record it', async () => {
    const url = '/api/v1/namespaces/payments/pods/debug-0/portforward?ports=5432';
    const attempt = () => open(h, url, ['v4.channel.k8s.io']).then(() => 'opened', (e: Error) => e.message);
    expect(await attempt()).to.equal('HTTP 403');
    h.setPolicy(`
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: pf }
spec:
  rules:
    - name: allow-port-forward
      kubernetes: { verbs: [create], resources: [pods/portforward] }
      action: allow
`);
    try {
      expect(await attempt()).to.equal('HTTP 400');
    } finally {
      h.setPolicy(TEST_POLICY);
    }
  });
});

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
