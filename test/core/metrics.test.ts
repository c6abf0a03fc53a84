import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { enableDefaultMetrics, registry } from '../../core/metrics.js';
import { countDecision, countReload, setPolicyLoaded } from '../../core/policy/metrics.js';
import { maskValue } from '../../core/mask/index.js';
import { openAuditWriter } from '../../core/audit/open.js';
import { event, tempDir } from './audit/fixture.js';

// Debian's prometheus package (test/apt-packages.txt) puts promtool here.
const PROMTOOL = '/usr/bin/promtool';

function promtoolCheck(text: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
    child.stdin.end(text);
  });
}

describe('metrics: the shared registry', () => {
  let text: string;
  before(async () => {
    enableDefaultMetrics();
    countDecision('allow', 'postgres', true);
    countDecision('deny', 'kubernetes', false);
    countReload('success');
    countReload('failure');
    setPolicyLoaded(true);
    maskValue({ statement: 'pan 4111111111111111', cvv: '123' });
    const { dir, cleanup } = tempDir();
    try {
      const w = await openAuditWriter({ file: path.join(dir, 'audit.log') });
      w.append(event(1));
      await w.close();
    } finally {
      cleanup();
    }
    text = await registry.metrics();
  });

  it('finds promtool at its Debian path', () => {
    expect(existsSync(PROMTOOL), `${PROMTOOL} missing: apt-get install prometheus`).to.equal(true);
  });

  it('passes `promtool check metrics` with no problem reported', async () => {
    expect(await promtoolCheck(text)).to.deep.equal({ code: 0, out: '' });
  });

  it('prefixes every metric with agentgate_', () => {
    const names = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    expect(names.length).to.be.greaterThan(10);
    expect(names.filter((n) => !n.startsWith('agentgate_'))).to.deep.equal([]);
  });

  it('has the default process metrics', () => {
    for (const n of ['agentgate_process_cpu_seconds_total', 'agentgate_process_resident_memory_bytes', 'agentgate_nodejs_eventloop_lag_seconds']) {
      expect(text).to.include(`# TYPE ${n} `);
    }
  });

  it('has the policy, masking and audit series', () => {
    for (const line of [
      'agentgate_policy_decisions_total{action="allow",protocol="postgres",enforced="true"} 1',
      'agentgate_policy_decisions_total{action="deny",protocol="kubernetes",enforced="false"} 1',
      'agentgate_policy_reloads_total{result="failure"} 1',
      'agentgate_policy_loaded 1',
      'agentgate_pans_masked_total{format="value"}',
      'agentgate_card_fields_masked_total{format="value"}',
      'agentgate_audit_events_total',
      'agentgate_audit_bytes_total',
      'agentgate_audit_errors_total{op="write"}',
      'agentgate_audit_errors_total{op="fsync"}',
      'agentgate_audit_errors_total{op="checkpoint"}',
      'agentgate_audit_errors_total{op="backlog"}',
      'agentgate_audit_checkpoints_total',
      'agentgate_audit_fsync_seconds_bucket{le="0.001"}',
    ]) {
      expect(text).to.include(line);
    }
  });
});
