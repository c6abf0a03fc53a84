// What an opted-in pod may not have, whatever the proxy does: ways to the real
// credentials that bypass the container boundary (the node's PID or IPC namespace,
// privileged containers, the kubelet's directory) and references to Secrets.
// Pure; the webhook, `agentgate inject` and the ephemeral-container path share it,
// and the ValidatingAdmissionPolicy checks the same rules on the final pod.

import type { Container, EnvVar, PodSpec, Volume } from './pod-types.js';
import type { InjectorConfig } from './config.js';
import { connectionUrlVar } from './env-rewrite.js';
import { KUBELET_DIR, KUBELET_HOST_PATH, SIDECAR_NAME, UNCLEAR_HOST_PATH } from './names.js';

const kubeletPath = new RegExp(KUBELET_HOST_PATH);
const unclearPath = new RegExp(UNCLEAR_HOST_PATH);

/** Why a hostPath is refused, or undefined when it does not reach the kubelet's directory. */
export function hostPathProblem(path: string): string | undefined {
  if (unclearPath.test(path)) return `hostPath '${path}' is not an absolute path without '.' or '..' segments, so agentgate cannot tell what it reaches`;
  if (kubeletPath.test(path)) return `hostPath '${path}' reaches the kubelet's directory ${KUBELET_DIR}, where every volume of the pod (the proxy's real token included) is readable`;
  return undefined;
}

/** Why a container is refused (privileged, or a Windows host process), or undefined. */
export function containerPrivilegeProblem(c: Container, kind: string): string | undefined {
  const sc = c.securityContext;
  if (sc?.privileged === true) return `${kind} '${c.name}' is privileged, so it can read the node's files, every volume of the pod (the proxy's real token included) among them`;
  if (sc?.windowsOptions?.hostProcess === true) return `${kind} '${c.name}' is a Windows host process, which runs on the node outside the pod's isolation`;
  return undefined;
}

/** Why the pod's own settings give its containers the node's view, or undefined. */
export function hostNamespaceProblem(spec: PodSpec): string | undefined {
  if (spec.hostPID) return `it sets hostPID, which puts its containers in the node's PID namespace, where a process with the proxy's uid reads the proxy's real token through /proc/<pid>/root`;
  if (spec.hostIPC) return `it sets hostIPC, which shares the node's IPC namespace (shared memory of every process on the node) with its containers`;
  if (spec.securityContext?.windowsOptions?.hostProcess === true) return `it runs as a Windows host process, outside the pod's isolation`;
  return undefined;
}

/** Every container of a pod spec but the proxy, with the word messages use for its kind. */
export function agentContainers(spec: PodSpec): [Container, string][] {
  return [
    ...(spec.initContainers ?? []).map((c): [Container, string] => [c, 'init container']),
    ...(spec.containers ?? []).map((c): [Container, string] => [c, 'container']),
    ...((spec.ephemeralContainers ?? []) as Container[]).map((c): [Container, string] => [c, 'ephemeral container']),
  ].filter(([c]) => c.name !== SIDECAR_NAME);
}

/** The first host-access problem of a pod spec: its namespaces, privileged containers, kubelet hostPaths. */
export function hostAccessProblem(spec: PodSpec, isOurVolume: (name: string) => boolean): string | undefined {
  const ns = hostNamespaceProblem(spec);
  if (ns) return ns;
  for (const [c, kind] of agentContainers(spec)) {
    const p = containerPrivilegeProblem(c, kind);
    if (p) return p;
  }
  for (const v of spec.volumes ?? []) {
    if (isOurVolume(v.name) || !v.hostPath) continue;
    const p = hostPathProblem(v.hostPath.path);
    if (p) return `volume '${v.name}': ${p}`;
  }
  return undefined;
}

export interface SecretReference {
  secret: string;
  /** Where it is referenced, for the message: `volume 'x'`, `container 'agent' (env DB_PASSWORD)`. */
  where: string;
}

function envReferences(c: Container, kind: string): SecretReference[] {
  const out: SecretReference[] = [];
  for (const e of (c.env ?? []) as EnvVar[]) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) out.push({ secret: ref.name ?? '', where: `${kind} '${c.name}' (env ${e.name})` });
  }
  for (const f of c.envFrom ?? []) if (f.secretRef) out.push({ secret: f.secretRef.name ?? '', where: `${kind} '${c.name}' (envFrom)` });
  return out;
}

/** The Secrets a volume carries: a secret volume's, or a projected volume's secret sources. */
export function volumeSecrets(v: Volume): string[] {
  const out: string[] = [];
  if (v.secret) out.push(v.secret.secretName ?? '');
  for (const s of v.projected?.sources ?? []) if (s.secret) out.push(s.secret.name ?? '');
  return out;
}

/**
 * The Secrets that one container can read: its env and envFrom references, and the
 * Secrets of the volumes it mounts, except the volumes in `skip` (ours, and the
 * credential volumes that token rewriting takes away from agents).
 */
export function containerSecretReferences(c: Container, kind: string, volumes: Map<string, Volume>, skip: (name: string) => boolean): SecretReference[] {
  const out = envReferences(c, kind);
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name);
    if (!v || skip(m.name)) continue;
    for (const secret of volumeSecrets(v)) out.push({ secret, where: `${kind} '${c.name}' (volume '${m.name}')` });
  }
  return out;
}

/** The Secrets that the agent containers of a pod spec can read (see containerSecretReferences). */
export function secretReferences(spec: PodSpec, skip: (name: string) => boolean): SecretReference[] {
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  return agentContainers(spec).flatMap(([c, kind]) => containerSecretReferences(c, kind, volumes, skip));
}

/** Why a Secret reference is refused, or undefined when the config allows it. */
export function secretReferenceProblem(ref: SecretReference, cfg: InjectorConfig): string | undefined {
  const conn = Object.entries(cfg.connections).find(([, c]) => c.secret === ref.secret);
  if (conn) {
    const [name, c] = conn;
    return `${ref.where} references Secret '${ref.secret}', the database credentials of connection '${name}', which only the proxy may read; connect through ${connectionUrlVar(name)} (postgres://127.0.0.1:${c.port}${c.database ? `/${c.database}` : ''}) instead`;
  }
  if (ref.secret !== '' && cfg.allowedSecrets.includes(ref.secret)) return undefined;
  return `${ref.where} references Secret '${ref.secret}', which is not in the injector config's allowedSecrets: agentgate cannot see a Secret's type, and a service-account token Secret can have any name, so agent pods may reference only the Secrets listed there`;
}

export function firstSecretProblem(refs: SecretReference[], cfg: InjectorConfig): string | undefined {
  for (const ref of refs) {
    const p = secretReferenceProblem(ref, cfg);
    if (p) return p;
  }
  return undefined;
}
