// `agentgate inject` on manifests: finds the pod (template) in each object, runs
// the same mutation as the webhook, and leaves every other object as it was.

import { stringify } from 'yaml';
import { loadYamlDocuments, formatSourceError } from '../core/yaml/validate.js';
import type { InjectorConfig } from './config.js';
import { mutatePod, podShapeError } from './mutate.js';
import { admitServiceAccount } from './service-account-admission.js';
import { isObject } from './pod-types.js';
import type { Pod } from './pod-types.js';

/** Where the pod template sits in each workload kind. */
const TEMPLATE_PATHS: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface InjectOutcome {
  /** The documents, injected where applicable, as YAML (`---` separated). */
  yaml: string;
  objects: unknown[];
  errors: string[];
  warnings: string[];
  injected: number;
}

export interface InjectOptions {
  version?: string;
  /** The namespace of objects that name none (as kubectl's --namespace): opt-outs are judged by it. */
  namespace?: string;
}

function label(obj: Record<string, unknown>): string {
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : typeof meta.generateName === 'string' ? `${meta.generateName}*` : '(unnamed)';
  const ns = typeof meta.namespace === 'string' ? `${meta.namespace}/` : '';
  return `${String(obj.kind)} ${ns}${name}`;
}

/** Injects into every pod and pod template of a YAML or JSON text (several documents, `List`s). */
export function injectManifests(text: string, file: string, cfg: InjectorConfig, opts: InjectOptions = {}): InjectOutcome {
  const out: InjectOutcome = { yaml: '', objects: [], errors: [], warnings: [], injected: 0 };
  const docs = loadYamlDocuments<unknown>(text, file, { kind: 'any' });
  docs.forEach((doc, di) => {
    const docName = `document ${di + 1}`;
    if (doc.errors.length) {
      out.errors.push(...doc.errors.map((e) => `${formatSourceError(e)} (document ${di + 1})`));
      return;
    }
    const at = (path: (string | number)[]) => {
      const p = doc.positionOf(path);
      return `${file}:${p.line}:${p.col}`;
    };
    const visit = (obj: unknown, path: (string | number)[]): unknown => {
      if (!isObject(obj)) return obj;
      if (typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj.items)) {
        return { ...obj, items: obj.items.map((item, i) => visit(item, [...path, 'items', i])) };
      }
      const kind = obj.kind;
      const where = `${docName} (${label(obj)})`;
      if (kind === 'Pod') {
        const meta = isObject(obj.metadata) ? obj.metadata : {};
        const r = injectPod(obj as Pod, 'Pod', obj, path, where, typeof meta.namespace === 'string' ? meta.namespace : undefined);
        return r ?? obj;
      }
      const tpath = typeof kind === 'string' ? TEMPLATE_PATHS[kind] : undefined;
      if (!tpath) return obj; // not a workload: passed through unchanged
      let tpl: unknown = obj;
      for (const k of tpath) tpl = isObject(tpl) ? tpl[k] : undefined;
      if (!isObject(tpl)) {
        out.errors.push(`${at(path)}: ${where}: ${tpath.join('.')}: missing pod template`);
        return obj;
      }
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...(isObject(tpl.metadata) ? tpl.metadata : {}) }, spec: tpl.spec } as Pod;
      // Templates carry no namespace; the workload's is the pod's.
      const meta = isObject(obj.metadata) ? obj.metadata : {};
      const injected = injectPod(pod, kind as string, obj, [...path, ...tpath], where, typeof meta.namespace === 'string' ? meta.namespace : undefined);
      if (!injected) return obj;
      const copy = structuredClone(obj);
      let parent: Record<string, unknown> = copy;
      for (const k of tpath.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
      parent[tpath[tpath.length - 1]] = { ...tpl, metadata: injected.metadata, spec: injected.spec };
      return copy;
    };
    const injectPod = (pod: Pod, kind: string, owner: Record<string, unknown>, path: (string | number)[], where: string, namespace?: string): Pod | undefined => {
      const meta = isObject(owner.metadata) ? owner.metadata : {};
      const seed = `${kind}/${String(meta.namespace ?? '')}/${String(meta.name ?? meta.generateName ?? '')}`;
      let result;
      try {
        const shaped = podShapeError(pod) === undefined ? admitServiceAccount(pod, seed) : pod;
        result = mutatePod(shaped, cfg, { namespaceOptedIn: true, workloadKind: kind, version: opts.version, namespace: namespace ?? opts.namespace, subject: kind === 'Pod' ? undefined : 'the pod template' });
      } catch (err) {
        out.errors.push(`${at(path)}: ${where}: cannot inject: ${(err as Error).message}`);
        return undefined;
      }
      const field = path.length ? `${path.filter((p) => typeof p === 'string').join('.')}: ` : '';
      if (result.action === 'refuse') {
        out.errors.push(`${at(path)}: ${where}: ${field}${result.message}`);
        return undefined;
      }
      if (result.action === 'skip') return undefined;
      out.injected++;
      for (const w of result.warnings) out.warnings.push(`${file}: ${where}: ${w}`);
      return result.pod;
    };
    out.objects.push(visit(doc.value, []));
  });
  out.yaml = out.objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
  return out;
}
