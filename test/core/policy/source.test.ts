import { expect } from 'chai';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FilePolicySource } from '../../../core/policy/source.js';
import type { ReloadListener } from '../../../core/policy/source.js';
import { registry } from '../../../core/metrics.js';
import { createLogger } from '../../../core/log.js';
import type { Identity } from '../../../core/identity.js';
import type { PgRequest } from '../../../core/policy/types.js';

const quiet = createLogger('policy-test', 'silent');
const agent: Identity = { subject: 'agent', groups: [], via: 'trust' };
const select: PgRequest = { protocol: 'postgres', connection: 'payments', statement: 'select', qualifiers: [], tables: ['public.cards'], functions: [] };

const policyText = (name: string, action = 'allow') =>
  `apiVersion: agentgate.dev/v1\nkind: Policy\nmetadata: { name: ${name} }\nspec:\n  rules:\n    - { name: reads, postgres: { statements: [select] }, action: ${action} }\n`;

/** A directory laid out the way the kubelet lays out a ConfigMap volume. */
class ConfigMapVolume {
  private generation = 0;
  constructor(readonly dir: string) {}

  get file(): string {
    return path.join(this.dir, 'policy.yaml');
  }

  init(text: string): void {
    this.writeGeneration(text);
    symlinkSync(this.current(), path.join(this.dir, '..data'));
    symlinkSync(path.join('..data', 'policy.yaml'), this.file);
  }

  /** The kubelet's atomic update: new timestamped dir, ..data_tmp → it, rename over ..data, old dir removed. */
  swap(text: string): void {
    const old = this.current();
    this.writeGeneration(text);
    symlinkSync(this.current(), path.join(this.dir, '..data_tmp'));
    renameSync(path.join(this.dir, '..data_tmp'), path.join(this.dir, '..data'));
    rmSync(path.join(this.dir, old), { recursive: true });
  }

  private current(): string {
    return `..2026_11_23_12_00_0${this.generation}.${1000 + this.generation}`;
  }

  private writeGeneration(text: string): void {
    this.generation++;
    mkdirSync(path.join(this.dir, this.current()));
    writeFileSync(path.join(this.dir, this.current(), 'policy.yaml'), text);
  }
}

function nextReload(source: FilePolicySource): Promise<Parameters<ReloadListener>[0]> {
  return new Promise((resolve) => {
    let done = false;
    source.onReload((r) => {
      if (done) return;
      done = true;
      resolve(r);
    });
  });
}

async function reloads(result: 'success' | 'failure'): Promise<number> {
  const m = registry.getSingleMetric('agentgate_policy_reloads_total');
  const v = (await m!.get()).values.find((x) => x.labels.result === result);
  return v?.value ?? 0;
}

describe('policy file source (hot reload)', () => {
  let dir: string;
  let source: FilePolicySource | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-policy-src-'));
  });
  afterEach(() => {
    source?.close();
    source = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads the policy through the ..data symlink', () => {
    const vol = new ConfigMapVolume(dir);
    vol.init(policyText('v1'));
    source = new FilePolicySource(vol.file, { logger: quiet, pollMs: 0 });
    expect(source.ready).to.equal(true);
    expect(source.current().name).to.equal('v1');
    expect(source.current().decide(agent, select).action).to.equal('allow');
  });

  it('follows an atomic ..data swap', async () => {
    const vol = new ConfigMapVolume(dir);
    vol.init(policyText('v1'));
    source = new FilePolicySource(vol.file, { logger: quiet, debounceMs: 20, pollMs: 0 }).start();
    const before = await reloads('success');
    const next = nextReload(source);
    vol.swap(policyText('v2', 'deny'));
    const r = await next;
    expect(r.ok).to.equal(true);
    expect(source.current().name).to.equal('v2');
    expect(source.current().decide(agent, select).action).to.equal('deny');
    expect(await reloads('success')).to.equal(before + 1);
  });

  it('keeps the last good policy when a reload fails validation, and counts the failure', async () => {
    const vol = new ConfigMapVolume(dir);
    vol.init(policyText('good'));
    source = new FilePolicySource(vol.file, { logger: quiet, debounceMs: 20, pollMs: 0 }).start();
    const before = await reloads('failure');
    const next = nextReload(source);
    vol.swap(policyText('bad').replace('action: allow', 'action: maybe'));
    const r = await next;
    expect(r.ok).to.equal(false);
    expect(r.errors.map((e) => `${e.line}:${e.col}: ${e.message}`)).to.deep.equal([
      "6:66: spec.rules[0].action: unknown value 'maybe' (expected one of: allow, deny, approve)",
    ]);
    expect(source.current().name).to.equal('good');
    expect(source.current().decide(agent, select).action).to.equal('allow');
    expect(await reloads('failure')).to.equal(before + 1);

    const fixed = nextReload(source);
    vol.swap(policyText('fixed'));
    expect((await fixed).ok).to.equal(true);
    expect(source.current().name).to.equal('fixed');
  });

  it('denies everything, saying why, while no valid policy was ever loaded', () => {
    const vol = new ConfigMapVolume(dir);
    vol.init('apiVersion: agentgate.dev/v1\nkind: Policy\n');
    source = new FilePolicySource(vol.file, { logger: quiet, pollMs: 0 });
    expect(source.ready).to.equal(false);
    const d = source.current().decide(agent, select);
    expect(d).to.deep.equal({
      action: 'deny',
      rule: 'policy-not-loaded',
      reason: `denied because the policy failed to load (${vol.file}:1:1: missing required key 'metadata' and 1 more error(s)); every request is denied until a valid policy is in place: fix the policy file (check it with \`agentgate policy check -f FILE\`)`,
      enforced: true,
      matched: [],
    });
    expect(source.current().masking.secrets).to.equal('redact');
  });

  it('denies everything when the file does not exist, and loads it once it appears', async () => {
    const file = path.join(dir, 'policy.yaml');
    source = new FilePolicySource(file, { logger: quiet, debounceMs: 20, pollMs: 0 }).start();
    expect(source.current().decide(agent, select).reason).to.match(/^denied because the policy failed to load \(.*policy\.yaml:1:1: cannot read policy file: no such file\)/);
    const next = nextReload(source);
    writeFileSync(file, policyText('late'));
    expect((await next).ok).to.equal(true);
    expect(source.current().name).to.equal('late');
  });

  it('picks up a change by polling when no watch event arrives', async () => {
    const file = path.join(dir, 'policy.yaml');
    writeFileSync(file, policyText('p1'));
    source = new FilePolicySource(file, { logger: quiet, debounceMs: 1, pollMs: 30, watch: false }).start();
    const next = nextReload(source);
    writeFileSync(file, policyText('p2'));
    expect((await next).ok).to.equal(true);
    expect(source.current().name).to.equal('p2');
  });

  it('does not count a reload when the content is unchanged', async () => {
    const vol = new ConfigMapVolume(dir);
    vol.init(policyText('same'));
    source = new FilePolicySource(vol.file, { logger: quiet, pollMs: 0 });
    const before = await reloads('success');
    vol.swap(policyText('same'));
    expect(source.reload()).to.equal(true);
    expect(await reloads('success')).to.equal(before);
  });
});
