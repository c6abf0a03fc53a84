// The mutation: Pod + injector config → the Pod the cluster should run, or a skip,
// or a refusal. Pure (no I/O, no clock, no randomness), shared by the webhook and
// `agentgate inject`, so what is tested offline is what the cluster gets.
//
// Idempotent the way Istio is: an injected pod is stripped of what we own and
// injected again from the rules, so re-injection gives the same pod, and a
// container another webhook added after us is rewritten like the others.

import type { Container, Pod, Volume } from './pod-types.js';
import { isObject } from './pod-types.js';
import type { ConnectionConfig, InjectorConfig, ResourceList } from './config.js';
import { parseQuantity } from './quantity.js';
import { VERSION } from '../core/version.js';
import {
  INJECT_LABEL, STATUS_ANNOTATION, CONFIG_ANNOTATION, CONNECTIONS_ANNOTATION, NATIVE_SIDECAR_ANNOTATION,
  KUBERNETES_ACCESS_ANNOTATION, REPLACED_ENV_ANNOTATION, RESOURCE_ANNOTATIONS, DEFAULT_CONTAINER_ANNOTATION,
  SIDECAR_NAME, IDENTITY_VOLUME, APPROVAL_TOKEN_VOLUME, CONFIG_VOLUME, OWN_TOKEN_VOLUME, CONNECTION_VOLUME_PREFIX, PORTS,
} from './names.js';
import { findCredentialVolumes, rewriteAgentMounts } from './token-rewrite.js';
import { firstSecretProblem, hostAccessProblem, secretReferences } from './pod-policy.js';
import { optInOf } from './opt-in.js';
import { agentEnv, rewriteEnv } from './env-rewrite.js';
import { buildSidecar, buildVolumes } from './sidecar-spec.js';
import type { Mode, SidecarPlan } from './sidecar-spec.js';
import { decodeStatus, encodeStatus } from './status.js';

export interface MutationContext {
  /**
   * The pod is opted in without its own label: it is in a namespace labeled
   * `agentgate.dev/inject: enabled` (the webhook is only called for such pods) or
   * the user asked `agentgate inject` for it.
   */
  namespaceOptedIn?: boolean;
  /** The workload kind whose template this pod comes from (`agentgate inject`); the webhook reads ownerReferences. */
  workloadKind?: string;
  /** Version written into the status annotation (tests pin it). */
  version?: string;
  /** The request's namespace, for messages (a pod being created often carries none itself). */
  namespace?: string;
  /** How messages name the pod (`agentgate inject` says "the pod template"). */
  subject?: string;
}

export type MutationResult =
  | { action: 'skip'; reason: string }
  | { action: 'refuse'; message: string }
  | { action: 'inject'; pod: Pod; warnings: string[] };

const CONFIG_MAP_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
/** How a refusal tells a non-agent pod where it belongs. */
const NOT_AN_AGENT = `, or, if it is not an agent, run it in a namespace that is not opted in (or one the injector config's optOut lists, labeled ${INJECT_LABEL}=disabled)`;

export function isOurVolume(name: string): boolean {
  return name === IDENTITY_VOLUME || name === APPROVAL_TOKEN_VOLUME || name === CONFIG_VOLUME || name === OWN_TOKEN_VOLUME || name.startsWith(CONNECTION_VOLUME_PREFIX);
}

/** Why a value that claims to be a Pod cannot be patched safely, or undefined. */
export function podShapeError(pod: unknown): string | undefined {
  if (!isObject(pod)) return 'the object is not a JSON object';
  if (pod.metadata !== undefined && !isObject(pod.metadata)) return 'metadata: expected an object';
  const meta = (pod.metadata ?? {}) as Record<string, unknown>;
  for (const f of ['labels', 'annotations']) {
    const m = meta[f];
    if (m === undefined || m === null) continue;
    if (!isObject(m) || Object.values(m).some((v) => typeof v !== 'string')) return `metadata.${f}: expected a map of strings`;
  }
  if (!isObject(pod.spec)) return 'spec: expected an object';
  const spec = pod.spec;
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) return 'spec.containers: expected a non-empty list';
  for (const f of ['containers', 'initContainers', 'ephemeralContainers']) {
    const list = spec[f];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) return `spec.${f}: expected a list`;
    for (const [i, c] of list.entries()) {
      if (!isObject(c) || typeof c.name !== 'string' || c.name === '') return `spec.${f}[${i}]: expected a container with a name`;
      for (const g of ['volumeMounts', 'env']) {
        const v = c[g];
        if (v !== undefined && v !== null && (!Array.isArray(v) || v.some((e) => !isObject(e) || typeof e.name !== 'string'))) {
          return `spec.${f}[${i}].${g}: expected a list of entries with names`;
        }
      }
      if (Array.isArray(c.volumeMounts) && c.volumeMounts.some((m: Record<string, unknown>) => typeof m.mountPath !== 'string')) {
        return `spec.${f}[${i}].volumeMounts: every mount needs a mountPath`;
      }
    }
  }
  if (spec.volumes !== undefined && spec.volumes !== null && (!Array.isArray(spec.volumes) || spec.volumes.some((v) => !isObject(v) || typeof v.name !== 'string'))) {
    return 'spec.volumes: expected a list of volumes with names';
  }
  return undefined;
}

function isJobPod(pod: Pod, ctx: MutationContext): boolean {
  if (ctx.workloadKind === 'Job' || ctx.workloadKind === 'CronJob') return true;
  return (pod.metadata?.ownerReferences ?? []).some((o) => o.kind === 'Job' && o.apiVersion.startsWith('batch/'));
}

export function describe(pod: Pod, namespace: string | undefined): string {
  const m = pod.metadata ?? {};
  const ns = m.namespace ?? namespace;
  return `pod ${ns ? `${ns}/` : ''}${m.name || (m.generateName ? `${m.generateName}*` : '(unnamed)')}`;
}

/** The sidecar's resources: config defaults, moved by annotations within the configured bounds. */
function sidecarResources(cfg: InjectorConfig, ann: Record<string, string>): SidecarPlan['resources'] | string {
  const requests: ResourceList = { ...cfg.resources.requests };
  const limits: ResourceList = { ...cfg.resources.limits };
  const set = (key: string, list: ResourceList, r: 'cpu' | 'memory'): string | undefined => {
    const v = ann[key];
    if (v === undefined) return undefined;
    const n = parseQuantity(v);
    if (n === undefined) return `annotation ${key}: '${v}' is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi)`;
    const b = cfg.resourceBounds[r];
    if (n < parseQuantity(b.min)! || n > parseQuantity(b.max)!) return `annotation ${key}: ${v} is outside the allowed range ${b.min}–${b.max}`;
    list[r] = v;
    return undefined;
  };
  const err =
    set(RESOURCE_ANNOTATIONS.cpuRequest, requests, 'cpu') ??
    set(RESOURCE_ANNOTATIONS.cpuLimit, limits, 'cpu') ??
    set(RESOURCE_ANNOTATIONS.memoryRequest, requests, 'memory') ??
    set(RESOURCE_ANNOTATIONS.memoryLimit, limits, 'memory');
  if (err) return err;
  for (const r of ['cpu', 'memory'] as const) {
    if (requests[r] && limits[r] && parseQuantity(requests[r]!)! > parseQuantity(limits[r]!)!) {
      return `the proxy's ${r} request ${requests[r]} is above its limit ${limits[r]} (check the agentgate.dev/proxy-${r}-* annotations)`;
    }
  }
  return { requests, limits };
}

export function connectionsOf(cfg: InjectorConfig, ann: Record<string, string>): [string, ConnectionConfig][] | string {
  const raw = ann[CONNECTIONS_ANNOTATION];
  if (raw === undefined || raw.trim() === '') return [];
  const names = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const out: [string, ConnectionConfig][] = [];
  for (const n of names) {
    const c = cfg.connections[n];
    if (!c) {
      const known = Object.keys(cfg.connections);
      return `annotation ${CONNECTIONS_ANNOTATION}: unknown connection '${n}' (${known.length ? `the injector config defines: ${known.join(', ')}` : 'the injector config defines no connections'})`;
    }
    if (!out.some(([m]) => m === n)) out.push([n, c]);
  }
  return out;
}

export function mutatePod(input: Pod, cfg: InjectorConfig, ctx: MutationContext = {}): MutationResult {
  const shape = podShapeError(input);
  const safe = (isObject(input) ? input : {}) as Pod;
  const namespace = ctx.namespace ?? (isObject(safe.metadata) && typeof safe.metadata.namespace === 'string' ? safe.metadata.namespace : undefined);
  const who = ctx.subject ?? describe(safe, ctx.namespace);
  const optIn = optInOf(safe, cfg, { namespaceOptedIn: ctx.namespaceOptedIn ?? false, namespace }, who);
  if (optIn.action !== 'inject') return optIn;
  if (shape) return { action: 'refuse', message: `agentgate cannot inject its proxy into this pod: ${shape}` };

  const pod = structuredClone(input);
  pod.metadata ??= {};
  const spec = pod.spec!;
  const ann: Record<string, string> = { ...(pod.metadata.annotations ?? {}) };
  const warnings: string[] = [];

  if (spec.hostNetwork) {
    return {
      action: 'refuse',
      message: `agentgate refuses ${who}: it uses hostNetwork, so the proxy's loopback listeners and the agent's traffic would be shared with the node and the agent cannot be protected; remove hostNetwork${NOT_AN_AGENT}`,
    };
  }

  if (spec.shareProcessNamespace) {
    return {
      action: 'refuse',
      message: `agentgate refuses ${who}: it sets shareProcessNamespace, which lets agent containers read the proxy's files (its real credentials) through /proc; remove it${NOT_AN_AGENT}`,
    };
  }

  const host = hostAccessProblem(spec, isOurVolume);
  if (host) return { action: 'refuse', message: `agentgate refuses ${who}: ${host}; remove it${NOT_AN_AGENT}` };

  const override = ann[NATIVE_SIDECAR_ANNOTATION];
  if (override !== undefined && override !== 'true' && override !== 'false') {
    return { action: 'refuse', message: `agentgate refuses ${who}: annotation ${NATIVE_SIDECAR_ANNOTATION}: expected "true" or "false", got '${override}'` };
  }
  let mode: Mode = cfg.nativeSidecars && override !== 'false' ? 'native' : 'classic';
  if (override === 'true' && !cfg.nativeSidecars) {
    mode = 'classic';
    warnings.push(`agentgate: ${NATIVE_SIDECAR_ANNOTATION}=true ignored: the injector is configured for a cluster without native sidecars; the proxy runs as a classic sidecar`);
  }
  if (mode === 'classic' && isJobPod(pod, ctx)) {
    return {
      action: 'refuse',
      message: `agentgate refuses ${who}: it belongs to a Job, and only a classic sidecar is possible here (${cfg.nativeSidecars ? `${NATIVE_SIDECAR_ANNOTATION}="false"` : 'the injector config sets nativeSidecars: false'}); a classic sidecar never exits, so the Job would never complete. Use native sidecars (Kubernetes ≥ 1.29)${NOT_AN_AGENT}`,
    };
  }

  const configMap = ann[CONFIG_ANNOTATION] ?? 'agentgate';
  if (!CONFIG_MAP_NAME.test(configMap) || configMap.length > 253) {
    return { action: 'refuse', message: `agentgate refuses ${who}: annotation ${CONFIG_ANNOTATION}: '${configMap}' is not a valid ConfigMap name` };
  }
  const connections = connectionsOf(cfg, ann);
  if (typeof connections === 'string') return { action: 'refuse', message: `agentgate refuses ${who}: ${connections}` };
  const res = sidecarResources(cfg, ann);
  if (typeof res === 'string') return { action: 'refuse', message: `agentgate refuses ${who}: ${res}` };
  const kubeAccess = ann[KUBERNETES_ACCESS_ANNOTATION];
  if (kubeAccess !== undefined && kubeAccess !== 'true' && kubeAccess !== 'false') {
    return { action: 'refuse', message: `agentgate refuses ${who}: annotation ${KUBERNETES_ACCESS_ANNOTATION}: expected "true" or "false", got '${kubeAccess}'` };
  }

  // A container or volume with one of our names that we did not put there would
  // be silently replaced: refuse instead, the user has to rename it.
  const injectedBefore = ann[STATUS_ANNOTATION] !== undefined;
  if (!injectedBefore) {
    const clash = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === SIDECAR_NAME);
    if (clash) return { action: 'refuse', message: `agentgate refuses ${who}: the container name '${SIDECAR_NAME}' is reserved for the agentgate proxy` };
    const vclash = (spec.volumes ?? []).find((v) => isOurVolume(v.name));
    if (vclash) return { action: 'refuse', message: `agentgate refuses ${who}: the volume name '${vclash.name}' is reserved for agentgate` };
  }

  // Strip what an earlier injection added; the rules below add it back.
  const init = (spec.initContainers ?? []).filter((c) => c.name !== SIDECAR_NAME);
  const containers = spec.containers.filter((c) => c.name !== SIDECAR_NAME);
  if (containers.length === 0) return { action: 'refuse', message: `agentgate refuses ${who}: it has no container besides ${SIDECAR_NAME}` };

  const previous = decodeStatus(ann[STATUS_ANNOTATION]);
  const creds = findCredentialVolumes({ ...pod, spec: { ...spec, initContainers: init, containers } }, previous?.tokenVolume ?? undefined, isOurVolume);
  const automountOff = spec.automountServiceAccountToken === false;
  let tokenVolume = creds.primary;
  let addOwnToken = false;
  if (tokenVolume === OWN_TOKEN_VOLUME || (!tokenVolume && automountOff && kubeAccess === 'true')) {
    tokenVolume = kubeAccess === 'false' ? undefined : OWN_TOKEN_VOLUME;
    addOwnToken = tokenVolume !== undefined;
  } else if (kubeAccess === 'false') {
    tokenVolume = undefined;
  }
  if (!tokenVolume && !automountOff && kubeAccess !== 'false') {
    warnings.push(`agentgate: ${who} has no service-account token volume; the proxy will deny every Kubernetes API request`);
  }

  // Agent containers: real-token mounts out, identity volume in, env pointed at the proxy.
  const env = agentEnv(connections);
  const replaced: Record<string, string[]> = parseReplaced(ann[REPLACED_ENV_ANNOTATION]);
  const rewrite = (c: Container): Container => {
    const mounted = rewriteAgentMounts(c, creds.all, isOurVolume);
    const { container, replaced: names } = rewriteEnv(mounted, structuredClone(env));
    if (names.length) replaced[c.name] = [...new Set([...(replaced[c.name] ?? []), ...names])].sort();
    return container;
  };
  const newInit = init.map(rewrite);
  const newContainers = containers.map(rewrite);
  const ephemeral = (spec.ephemeralContainers ?? []).map((c) => rewriteAgentMounts(c as Container, creds.all, isOurVolume));

  // Agents may read only allowed Secrets. Checked on the rewritten containers: an env
  // variable we replaced (PGPASSWORD from a Secret, say) no longer reads anything.
  const secret = firstSecretProblem(secretReferences({ ...spec, initContainers: newInit, containers: newContainers, ephemeralContainers: ephemeral as typeof spec.ephemeralContainers }, (name) => creds.all.has(name) || isOurVolume(name)), cfg);
  if (secret) return { action: 'refuse', message: `agentgate refuses ${who}: ${secret}` };

  const plan: SidecarPlan = { mode, configMap, tokenVolume, connections, resources: res };
  const sidecar = buildSidecar(cfg, plan);
  const initList = mode === 'native' ? [sidecar, ...newInit] : newInit;
  if (initList.length > 0 && spec.initContainers === undefined) placeBefore(spec as unknown as Record<string, unknown>, 'initContainers', 'containers');
  spec.initContainers = initList;
  spec.containers = mode === 'classic' ? [sidecar, ...newContainers] : newContainers;
  if (spec.initContainers.length === 0) delete spec.initContainers;
  if (spec.ephemeralContainers !== undefined) spec.ephemeralContainers = ephemeral as typeof spec.ephemeralContainers;

  const ourVolumes = buildVolumes(cfg, plan, addOwnToken);
  // The token volume stays (the sidecar mounts it); only our own volumes are replaced.
  const keep: Volume[] = (spec.volumes ?? []).filter((v) => !isOurVolume(v.name));
  spec.volumes = [...keep, ...ourVolumes];

  if (mode === 'classic' && newInit.length > 0) {
    warnings.push(`agentgate: classic sidecar mode: init containers (${newInit.map((c) => c.name).join(', ')}) run before the proxy starts and have no Kubernetes or database access`);
  }
  if (mode === 'classic' && spec.restartPolicy && spec.restartPolicy !== 'Always') {
    warnings.push(`agentgate: classic sidecar mode with restartPolicy ${spec.restartPolicy}: the proxy never exits, so the pod will not complete`);
  }
  // Not refused: without the node's PID namespace these cannot reach the proxy's processes, but they widen what a break-out could do.
  const capable = [...newInit, ...newContainers].filter((c) => c.securityContext?.capabilities?.add?.some((cap) => /^(CAP_)?(SYS_ADMIN|SYS_PTRACE|ALL)$/i.test(cap)));
  if (capable.length) warnings.push(`agentgate: containers ${capable.map((c) => c.name).join(', ')} add SYS_ADMIN, SYS_PTRACE or ALL capabilities: a container break-out from them would reach the proxy's credentials`);
  const hostPaths = new Set((spec.volumes ?? []).filter((v) => v.hostPath).map((v) => v.name));
  const hostMounters = [...newInit, ...newContainers].filter((c) => (c.volumeMounts ?? []).some((m) => hostPaths.has(m.name)));
  if (hostMounters.length) warnings.push(`agentgate: containers ${hostMounters.map((c) => c.name).join(', ')} mount hostPath volumes: node files outside what the proxy controls`);
  const usedPorts = [...newInit, ...newContainers].flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
  const clashes = usedPorts.filter((p) => p === PORTS.kubernetes || p === PORTS.health || p === PORTS.metrics || connections.some(([, c]) => c.port === p));
  if (clashes.length) warnings.push(`agentgate: container ports ${[...new Set(clashes)].join(', ')} are the proxy's; the agent and the proxy cannot both listen there`);

  if (ann['prometheus.io/port'] !== undefined && ann['prometheus.io/port'] !== String(PORTS.metrics)) {
    warnings.push(`agentgate: the pod's own prometheus.io annotations are kept; scrape the proxy on port ${PORTS.metrics} (name ag-metrics) with a PodMonitor`);
  } else {
    ann['prometheus.io/scrape'] = 'true';
    ann['prometheus.io/port'] = String(PORTS.metrics);
    ann['prometheus.io/path'] = '/metrics';
  }
  ann[DEFAULT_CONTAINER_ANNOTATION] ??= newContainers[0].name;
  if (Object.keys(replaced).length) ann[REPLACED_ENV_ANNOTATION] = formatReplaced(replaced);
  ann[STATUS_ANNOTATION] = encodeStatus({
    version: ctx.version ?? VERSION,
    mode,
    sidecar: SIDECAR_NAME,
    image: cfg.image,
    config: configMap,
    tokenVolume: tokenVolume ?? null,
    connections: connections.map(([n]) => n),
    volumes: ourVolumes.map((v) => v.name),
    initContainers: newInit.map((c) => c.name),
    containers: newContainers.map((c) => c.name),
  });
  pod.metadata.annotations = ann;
  return { action: 'inject', pod, warnings };
}

/** Inserts an (empty) key before another, so that output reads in the usual order. */
function placeBefore(obj: Record<string, unknown>, key: string, before: string): void {
  const entries = Object.entries(obj);
  for (const k of Object.keys(obj)) delete obj[k];
  for (const [k, v] of entries) {
    if (k === before) obj[key] = undefined;
    obj[k] = v;
  }
}

/** `app=PGHOST,PGPORT;worker=KUBERNETES_SERVICE_HOST` — names only, never values. */
function formatReplaced(r: Record<string, string[]>): string {
  return Object.keys(r)
    .sort()
    .map((c) => `${c}=${r[c].join(',')}`)
    .join(';');
}

function parseReplaced(text: string | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (!text) return out;
  for (const part of text.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    out[part.slice(0, i)] = part.slice(i + 1).split(',').filter(Boolean);
  }
  return out;
}
