// `agentgate inject`: manifests in (YAML or JSON, several documents, Lists, every
// workload kind), YAML out, other objects untouched, errors that name the
// document and the field. The last tests run the real binary.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { injectManifests } from '../../injector/manifests.js';
import { DEFAULT_CONFIG } from '../../injector/config.js';
import { SA_PATH } from '../../injector/names.js';
import type { Pod, PodSpec } from '../../injector/pod-types.js';
import { GOLDEN_DIR, goldenConfig, podProblems } from './support.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cli/main.js');

const podSpec = { containers: [{ name: 'agent', image: 'registry.example/agent:1' }] };
const template = { metadata: { labels: { app: 'agent' } }, spec: podSpec };

function workload(kind: string, apiVersion: string): Record<string, unknown> {
  const spec = kind === 'CronJob' ? { schedule: '0 3 * * *', jobTemplate: { spec: { template: { ...template, spec: { ...podSpec, restartPolicy: 'Never' } } } } } : { selector: { matchLabels: { app: 'agent' } }, template };
  return structuredClone({ apiVersion, kind, metadata: { name: kind.toLowerCase(), namespace: 'agents' }, spec });
}

function toYaml(objs: unknown[]): string {
  return objs.map((o) => JSON.stringify(o)).join('\n---\n');
}

function templateOf(obj: any): { metadata: any; spec: PodSpec } {
  return obj.kind === 'CronJob' ? obj.spec.jobTemplate.spec.template : obj.kind === 'Pod' ? obj : obj.spec.template;
}

describe('agentgate inject', () => {
  const cfg = goldenConfig(false);

  it('injects the pod template of Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob', () => {
    const objs = [
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'pod', namespace: 'agents' }, spec: structuredClone(podSpec) },
      workload('Deployment', 'apps/v1'),
      workload('StatefulSet', 'apps/v1'),
      workload('DaemonSet', 'apps/v1'),
      workload('ReplicaSet', 'apps/v1'),
      workload('Job', 'batch/v1'),
      workload('CronJob', 'batch/v1'),
    ];
    const out = injectManifests(toYaml(objs), 'all.yaml', cfg);
    expect(out.errors).to.deep.equal([]);
    expect(out.injected).to.equal(7);
    const docs = parseAllDocuments(out.yaml).map((d) => d.toJS());
    expect(docs.map((d) => d.kind)).to.deep.equal(['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob']);
    for (const d of docs) {
      const t = templateOf(d);
      expect(t.spec.initContainers![0].name, d.kind).to.equal('agentgate-proxy');
      expect(t.metadata.annotations['agentgate.dev/status'], d.kind).to.be.a('string');
      expect(podProblems({ apiVersion: 'v1', kind: 'Pod', metadata: t.metadata, spec: t.spec } as Pod), d.kind).to.deep.equal([]);
    }
  });

  it('adds the kube-api-access volume the API server would add, and gives it only to the proxy', () => {
    const out = injectManifests(toYaml([workload('Deployment', 'apps/v1')]), 'd.yaml', cfg);
    const t = templateOf(parse(out.yaml));
    const kaa = t.spec.volumes!.find((v) => v.name.startsWith('kube-api-access-'))!;
    expect(kaa.name).to.match(/^kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(kaa.projected!.sources!.map((s) => Object.keys(s)[0])).to.deep.equal(['serviceAccountToken', 'configMap', 'downwardAPI']);
    const proxy = t.spec.initContainers![0];
    expect(proxy.volumeMounts!.find((m) => m.mountPath === '/var/run/secrets/agentgate/kube-api')!.name).to.equal(kaa.name);
    expect(proxy.volumeMounts!.find((m) => m.mountPath === SA_PATH)!.name).to.equal('agentgate-identity');
    expect(t.spec.containers[0].volumeMounts).to.deep.equal([{ name: 'agentgate-identity', mountPath: SA_PATH, readOnly: true }]);
    expect(t.spec.serviceAccountName).to.equal('default');
  });

  it('gives the same output for the same input (the token volume name is derived, not random)', () => {
    const text = toYaml([workload('Deployment', 'apps/v1')]);
    expect(injectManifests(text, 'a.yaml', cfg).yaml).to.equal(injectManifests(text, 'a.yaml', cfg).yaml);
  });

  it('passes other objects through unchanged, in order', () => {
    const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'agent' }, spec: { ports: [{ port: 80 }] } };
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'agentgate' }, data: { 'config.yaml': 'kubernetes: {}\n' } };
    const out = injectManifests(toYaml([svc, workload('Deployment', 'apps/v1'), cm]), 'm.yaml', cfg);
    const docs = parseAllDocuments(out.yaml).map((d) => d.toJS());
    expect(docs[0]).to.deep.equal(svc);
    expect(docs[2]).to.deep.equal(cm);
  });

  it('injects inside a List (kubectl get -o yaml)', () => {
    const list = { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: [workload('Deployment', 'apps/v1'), { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } }] };
    const out = injectManifests(JSON.stringify(list), 'list.json', cfg);
    expect(out.injected).to.equal(1);
    const doc = parse(out.yaml);
    expect(doc.kind).to.equal('List');
    expect(templateOf(doc.items[0]).spec.initContainers![0].name).to.equal('agentgate-proxy');
    expect(doc.items[1]).to.deep.equal(list.items[1]);
  });

  it('leaves templates labeled disabled as they are in a namespace the config lets opt out', () => {
    const d = workload('Deployment', 'apps/v1') as any;
    d.metadata.namespace = 'platform';
    d.spec.template.metadata.labels['agentgate.dev/inject'] = 'disabled';
    const out = injectManifests(JSON.stringify(d), 'd.json', cfg);
    expect(out.errors).to.deep.equal([]);
    expect(out.injected).to.equal(0);
    expect(parse(out.yaml)).to.deep.equal(d);
  });

  it('refuses a template labeled disabled whose namespace and service account may not opt out, as the webhook does', () => {
    const d = workload('Deployment', 'apps/v1') as any;
    d.spec.template.metadata.labels['agentgate.dev/inject'] = 'disabled';
    const out = injectManifests(JSON.stringify(d), 'd.json', cfg);
    expect(out.errors).to.deep.equal([
      "d.json:1:161: document 1 (Deployment agents/deployment): spec.template: agentgate refuses the pod template: it is labeled agentgate.dev/inject=disabled in a namespace that is opted in, but only the namespaces and service accounts in the injector config's optOut may opt out, and neither namespace 'agents' nor service account 'agents/default' is listed",
    ]);
  });

  it('judges an opt-out of an object without a namespace by the namespace option', () => {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'exporter', labels: { 'agentgate.dev/inject': 'disabled' } }, spec: { ...structuredClone(podSpec), serviceAccountName: 'batch-exporter' } };
    expect(injectManifests(JSON.stringify(pod), 'p.json', cfg).errors[0]).to.match(/the namespace is not known \(service account 'batch-exporter'; give the manifest a namespace or use --namespace\)$/);
    const out = injectManifests(JSON.stringify(pod), 'p.json', cfg, { namespace: 'agents' });
    expect(out.errors).to.deep.equal([]);
    expect(parse(out.yaml)).to.deep.equal(pod);
  });

  it('refuses a CronJob when only a classic sidecar is possible, naming the document and the field', () => {
    const text = `apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n${JSON.stringify(workload('CronJob', 'batch/v1'))}\n`;
    const out = injectManifests(text, 'jobs.yaml', goldenConfig(true));
    expect(out.errors).to.have.length(1);
    expect(out.errors[0]).to.match(/^jobs\.yaml:5:\d+: document 2 \(CronJob agents\/cronjob\): spec\.jobTemplate\.spec\.template: agentgate refuses the pod template: it belongs to a Job/);
  });

  it('names the field of a malformed pod template', () => {
    const d = workload('Deployment', 'apps/v1') as any;
    d.spec.template.spec.containers[0].volumeMounts = [{ name: 'x' }];
    const out = injectManifests(`# comment\n${JSON.stringify(d)}`, 'bad.yaml', cfg);
    expect(out.errors).to.deep.equal([
      'bad.yaml:2:161: document 1 (Deployment agents/deployment): spec.template: agentgate cannot inject its proxy into this pod: spec.containers[0].volumeMounts: every mount needs a mountPath',
    ]);
  });

  it('reports a workload without a pod template', () => {
    const out = injectManifests('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n', 'x.yaml', DEFAULT_CONFIG);
    expect(out.errors).to.deep.equal(['x.yaml:1:1: document 1 (Deployment d): spec.template: missing pod template']);
  });

  it('reports invalid YAML with its line and column', () => {
    const out = injectManifests('apiVersion: v1\nkind: Service\n---\nmetadata: {name: [\n', 'broken.yaml', DEFAULT_CONFIG);
    expect(out.errors[0]).to.match(/^broken\.yaml:\d+:\d+: invalid YAML: .* \(document 2\)$/);
  });

  describe('the binary', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-inject-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('reads stdin with -f - and writes YAML to stdout', () => {
      const r = spawnSync(process.execPath, [MAIN, 'inject', '-f', '-'], { input: JSON.stringify(workload('Deployment', 'apps/v1')), encoding: 'utf8' });
      expect(r.stderr).to.equal('');
      expect(r.status).to.equal(0);
      expect(templateOf(parse(r.stdout)).spec.initContainers![0].name).to.equal('agentgate-proxy');
    });

    it('--policy-params prints the ConfigMap the ValidatingAdmissionPolicy reads, from --config', () => {
      const r = spawnSync(process.execPath, [MAIN, 'inject', '--policy-params', '--config', path.join(GOLDEN_DIR, 'config.yaml')], { encoding: 'utf8' });
      expect(r.stderr).to.equal('');
      expect(r.status).to.equal(0);
      expect(parse(r.stdout)).to.deep.equal({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'agentgate-injector-policy', namespace: 'agentgate-system', labels: { 'app.kubernetes.io/name': 'agentgate', 'app.kubernetes.io/component': 'injector' } },
        data: { 'allowed-secret.openai-api-key': '', 'opt-out-namespace.platform': '', 'opt-out-service-account.agents.batch-exporter': '' },
      });
    });

    it('uses --config and exits 1 with nothing on stdout when a document is refused', () => {
      const cfgFile = path.join(dir, 'injector.yaml');
      writeFileSync(cfgFile, 'nativeSidecars: false\n');
      const file = path.join(dir, 'job.yaml');
      writeFileSync(file, JSON.stringify(workload('Job', 'batch/v1')));
      const r = spawnSync(process.execPath, [MAIN, 'inject', '-f', file, '--config', cfgFile], { encoding: 'utf8' });
      expect(r.status).to.equal(1);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.match(/^agentgate inject: .*job\.yaml:1:\d+: document 1 \(Job agents\/job\): spec\.template: agentgate refuses the pod template: it belongs to a Job/);
    });

    it('reports a bad config with file:line:col and exits 1', () => {
      const cfgFile = path.join(dir, 'bad.yaml');
      writeFileSync(cfgFile, 'image: x\nnativeSidecar: false\n');
      const r = spawnSync(process.execPath, [MAIN, 'inject', '-f', '-', '--config', cfgFile], { input: '', encoding: 'utf8' });
      expect(r.status).to.equal(1);
      expect(r.stderr).to.equal(`agentgate inject: invalid config:\n${cfgFile}:2:1: nativeSidecar: unknown key (did you mean 'nativeSidecars'?)\n`);
    });

    it('exits 2 without -f', () => {
      const r = spawnSync(process.execPath, [MAIN, 'inject'], { encoding: 'utf8' });
      expect(r.status).to.equal(2);
      expect(r.stderr).to.equal('agentgate inject: missing -f FILE (or -f - for stdin) (see agentgate inject --help)\n');
    });
  });
});
