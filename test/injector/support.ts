// Support for the injector tests: golden cases, AdmissionReview fixtures shaped
// like the API server's, test certificates (real openssl), an HTTPS client, and
// validation of pods against the official Kubernetes schema.

import { readFileSync, readdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { Agent, request } from 'undici';
import { Pod as PodModel } from 'kubernetes-models/v1/Pod';
import { parseInjectorConfig } from '../../injector/config.js';
import type { InjectorConfig } from '../../injector/config.js';
import type { Pod } from '../../injector/pod-types.js';

/** The golden files live in the source tree (dist/test/injector → test/injector/golden). */
export const GOLDEN_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/injector/golden');
export const UPDATE = process.env.UPDATE_GOLDEN === '1';
/** Pinned so that golden files do not change with the package version. */
export const GOLDEN_VERSION = '0.0.0-golden';

export function goldenConfig(classic: boolean): InjectorConfig {
  const f = path.join(GOLDEN_DIR, classic ? 'config-classic.yaml' : 'config.yaml');
  return parseInjectorConfig(readFileSync(f, 'utf8'), f);
}

export interface GoldenCase {
  name: string;
  classic: boolean;
  input: Pod;
  outFile: string;
}

/** Every `<name>.in.yaml`, plus the two cases derived from plain's golden output. */
export function goldenCases(): GoldenCase[] {
  const cases: GoldenCase[] = readdirSync(GOLDEN_DIR)
    .filter((f) => f.endsWith('.in.yaml'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.in.yaml'.length);
      return { name, classic: name.startsWith('classic-'), input: parse(readFileSync(path.join(GOLDEN_DIR, f), 'utf8')) as Pod, outFile: path.join(GOLDEN_DIR, `${name}.out.yaml`) };
    });
  return cases;
}

/** A case whose input is another case's golden output (read lazily: it may be regenerated first). */
export function derivedInput(name: 'already-injected' | 'reinvoked'): Pod {
  const injected = parse(readFileSync(path.join(GOLDEN_DIR, 'plain.out.yaml'), 'utf8')) as Pod;
  if (name === 'already-injected') return injected;
  // Another webhook appended a container after us; the API server's ServiceAccount
  // step, run again, gave it the real-token mount.
  const extra = parse(readFileSync(path.join(GOLDEN_DIR, 'reinvoked.extra.yaml'), 'utf8'));
  injected.spec!.containers.push(extra);
  return injected;
}

export type GoldenOutcome = { action: 'inject'; pod: Pod; warnings: string[] } | { action: 'refuse'; message: string } | { action: 'skip' };

/**
 * The golden text: warnings as comments, then the pod (keys sorted, as kubectl
 * prints objects, so that both paths render the same pod the same way), or the
 * refusal / skip.
 */
export function renderGolden(o: GoldenOutcome): string {
  switch (o.action) {
    case 'inject':
      return `${o.warnings.map((w) => `# warning: ${w}\n`).join('')}${stringify(o.pod, { lineWidth: 0, aliasDuplicateObjects: false, sortMapEntries: true })}`;
    case 'refuse':
      return stringify({ refused: o.message }, { lineWidth: 0 });
    case 'skip':
      return stringify({ skipped: true });
  }
}

/** Compares with the golden file, or rewrites it with UPDATE_GOLDEN=1. Returns the golden text. */
export function checkGolden(file: string, actual: string): string {
  if (UPDATE) {
    writeFileSync(file, actual);
    return actual;
  }
  let expected: string;
  try {
    expected = readFileSync(file, 'utf8');
  } catch {
    throw new Error(`golden file ${path.basename(file)} is missing; run with UPDATE_GOLDEN=1 to create it`);
  }
  return expected;
}

/** An AdmissionReview exactly as kube-apiserver sends it for a pod CREATE. */
export function admissionReview(pod: Pod, opts: { dryRun?: boolean; uid?: string; apiVersion?: string } = {}): Record<string, unknown> {
  const ns = pod.metadata?.namespace ?? 'default';
  return {
    kind: 'AdmissionReview',
    apiVersion: opts.apiVersion ?? 'admission.k8s.io/v1',
    request: {
      uid: opts.uid ?? randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: pod.metadata?.name ?? '',
      namespace: ns,
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: '5b2f3c77-6f3e-4d6b-9a0e-3b0c1e3f9a10',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: opts.dryRun ?? false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}

export interface TestCert {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: string;
  cleanup(): void;
}

/** A self-signed serving certificate for 127.0.0.1 made with openssl; `days` may be 0 for one that expires at once. */
export function makeCert(dir?: string, cn = 'agentgate-injector'): TestCert {
  const d = dir ?? mkdtempSync(path.join(os.tmpdir(), 'agentgate-injector-'));
  const certFile = path.join(d, 'tls.crt');
  const keyFile = path.join(d, 'tls.key');
  writeCertPair(certFile, keyFile, cn);
  return { dir: d, certFile, keyFile, cert: readFileSync(certFile, 'utf8'), cleanup: () => rmSync(d, { recursive: true, force: true }) };
}

export function writeCertPair(certFile: string, keyFile: string, cn: string): void {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { stdio: 'ignore' },
  );
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): any;
}

export function httpsClient(ca: string | string[]): { post(url: string, body: string | Buffer, headers?: Record<string, string>): Promise<HttpAnswer>; get(url: string): Promise<HttpAnswer>; close(): Promise<void> } {
  const agent = new Agent({ connect: { ca } });
  const go = async (url: string, method: 'GET' | 'POST', body?: string | Buffer, headers?: Record<string, string>): Promise<HttpAnswer> => {
    const r = await request(url, { method, body, headers: { 'content-type': 'application/json', ...(headers ?? {}) }, dispatcher: agent });
    const text = await r.body.text();
    return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
  };
  return { post: (u, b, h) => go(u, 'POST', b, h), get: (u) => go(u, 'GET'), close: () => agent.close() };
}

/**
 * Validates a pod against the official Kubernetes OpenAPI schema (kubernetes-models)
 * plus the API server's pod validation rules that a schema cannot express and a
 * patch of ours could break. Returns the problems (empty when valid).
 */
export function podProblems(pod: Pod): string[] {
  const problems: string[] = [];
  try {
    new PodModel(pod as never).validate();
  } catch (err) {
    problems.push(`schema: ${(err as Error).message}`);
  }
  const spec = pod.spec;
  if (!spec) return [...problems, 'no spec'];
  const volumes = new Set<string>();
  for (const v of spec.volumes ?? []) {
    if (volumes.has(v.name)) problems.push(`spec.volumes: duplicate name ${v.name}`);
    volumes.add(v.name);
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v.name) || v.name.length > 63) problems.push(`spec.volumes: invalid name ${v.name}`);
  }
  const names = new Set<string>();
  const all = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of all) {
    if (names.has(c.name)) problems.push(`duplicate container name ${c.name}`);
    names.add(c.name);
    const paths = new Set<string>();
    for (const m of c.volumeMounts ?? []) {
      if (!volumes.has(m.name)) problems.push(`container ${c.name}: mount of unknown volume ${m.name}`);
      if (paths.has(m.mountPath)) problems.push(`container ${c.name}: duplicate mountPath ${m.mountPath}`);
      paths.add(m.mountPath);
    }
    const env = new Set<string>();
    for (const e of c.env ?? []) {
      if (!/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(e.name)) problems.push(`container ${c.name}: invalid env name ${e.name}`);
      if (e.value !== undefined && e.valueFrom !== undefined) problems.push(`container ${c.name}: env ${e.name} has value and valueFrom`);
      env.add(e.name);
    }
    for (const p of c.ports ?? []) if (p.name && p.name.length > 15) problems.push(`container ${c.name}: port name ${p.name} longer than 15`);
    if (c.restartPolicy !== undefined && !(spec.initContainers ?? []).includes(c)) problems.push(`container ${c.name}: restartPolicy is only allowed on init containers`);
  }
  for (const [k, v] of Object.entries(pod.metadata?.annotations ?? {})) if (typeof v !== 'string') problems.push(`annotation ${k} is not a string`);
  return problems;
}

/** Every volume that no container but the sidecar may mount. */
export function credentialVolumeNames(pod: Pod): Set<string> {
  const out = new Set<string>();
  for (const v of pod.spec?.volumes ?? []) {
    if (v.projected?.sources?.some((s) => s.serviceAccountToken)) out.add(v.name);
    if (v.secret && (/-token-[a-z0-9]{5}$/.test(v.secret.secretName ?? '') || v.name.startsWith('agentgate-conn-'))) out.add(v.name);
  }
  return out;
}
