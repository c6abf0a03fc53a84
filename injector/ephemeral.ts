// Ephemeral containers (`kubectl debug`): added to a running pod through an UPDATE of
// the pods/ephemeralcontainers subresource, after the pod was injected. A new
// ephemeral container of an injected pod is rewritten like every other agent
// container (no real-token mount, the identity volume at the service-account path,
// Kubernetes and database env pointed at the proxy) and refused if it is privileged
// or reads a Secret the config does not allow. Pure, like the pod mutation.
//
// Two request shapes exist. From Kubernetes 1.22 the subresource takes the whole Pod.
// Before, with the alpha EphemeralContainers gate, it takes an `EphemeralContainers`
// object: the pod's name and the list of ephemeral containers, without the pod's
// labels, annotations or volumes; then the webhook cannot tell an agent pod from
// another, nor a token volume from another, and refuses every new ephemeral
// container that mounts a volume or reads a Secret the config does not allow.

import type { Container, Pod } from './pod-types.js';
import { isObject } from './pod-types.js';
import type { InjectorConfig } from './config.js';
import type { MutationResult } from './mutate.js';
import { connectionsOf, describe, isOurVolume, podShapeError } from './mutate.js';
import { IDENTITY_VOLUME, INJECT_LABEL, SIDECAR_NAME, STATUS_ANNOTATION } from './names.js';
import { findCredentialVolumes, rewriteAgentMounts } from './token-rewrite.js';
import { agentEnv, rewriteEnv } from './env-rewrite.js';
import { containerPrivilegeProblem, containerSecretReferences, firstSecretProblem } from './pod-policy.js';
import { decodeStatus } from './status.js';

function names(list: unknown): Set<string> {
  return new Set(Array.isArray(list) ? list.filter(isObject).map((c) => String(c.name)) : []);
}

/** The ephemeral containers a request adds: those the stored object does not have yet (existing ones cannot change). */
function added(list: Container[], old: Set<string>): Container[] {
  return list.filter((c) => !old.has(c.name));
}

function isInjected(pod: Pod): boolean {
  return pod.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined || (pod.spec?.containers ?? []).some((c) => c.name === SIDECAR_NAME) || (pod.spec?.initContainers ?? []).some((c) => c.name === SIDECAR_NAME);
}

/** An UPDATE of pods/ephemeralcontainers carrying the whole Pod (Kubernetes ≥ 1.22). */
export function mutateEphemeralContainers(input: Pod, old: Pod | undefined, cfg: InjectorConfig, ctx: { namespace?: string } = {}): MutationResult {
  const shape = podShapeError(input);
  if (shape) return { action: 'refuse', message: `agentgate cannot check the ephemeral containers of this pod: ${shape}` };
  const who = describe(input, ctx.namespace);
  const fresh = added((input.spec!.ephemeralContainers ?? []) as Container[], names(old?.spec?.ephemeralContainers));
  if (fresh.length === 0) return { action: 'skip', reason: 'no ephemeral container added' };
  if (!isInjected(input)) {
    // An opted-in pod without the proxy was never protected; adding a container to it is no way around
    // the proxy, but the pod itself is wrong, and the label says it should not run like this.
    if (input.metadata?.labels?.[INJECT_LABEL] === 'enabled') {
      return { action: 'refuse', message: `agentgate refuses ephemeral containers for ${who}: it is labeled ${INJECT_LABEL}=enabled but has no agentgate proxy (created while the injector was not installed?); recreate the pod` };
    }
    return { action: 'skip', reason: 'the pod has no agentgate proxy' };
  }

  const pod = structuredClone(input);
  const spec = pod.spec!;
  const ann = pod.metadata?.annotations ?? {};
  const connections = connectionsOf(cfg, ann);
  // The pod was injected with this annotation; a connection since removed from the config leaves the debug container without its URL.
  const env = agentEnv(typeof connections === 'string' ? [] : connections);
  const creds = findCredentialVolumes(pod, decodeStatus(ann[STATUS_ANNOTATION])?.tokenVolume ?? undefined, isOurVolume);
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  const hasIdentity = volumes.has(IDENTITY_VOLUME);
  const rewritten = new Map<string, Container>();
  for (const c of fresh) {
    const privileged = containerPrivilegeProblem(c, 'ephemeral container');
    if (privileged) return { action: 'refuse', message: `agentgate refuses ephemeral containers for ${who}: ${privileged}; debug without privileges` };
    let out = rewriteAgentMounts(c, creds.all, isOurVolume);
    if (!hasIdentity) out = { ...out, volumeMounts: (out.volumeMounts ?? []).filter((m) => m.name !== IDENTITY_VOLUME) };
    out = rewriteEnv(out, structuredClone(env)).container;
    const secret = firstSecretProblem(containerSecretReferences(out, 'ephemeral container', volumes, (n) => creds.all.has(n) || isOurVolume(n)), cfg);
    if (secret) return { action: 'refuse', message: `agentgate refuses ephemeral containers for ${who}: ${secret}` };
    rewritten.set(c.name, out);
  }
  spec.ephemeralContainers = (spec.ephemeralContainers ?? []).map((c) => rewritten.get(c.name) ?? c) as typeof spec.ephemeralContainers;
  return { action: 'inject', pod, warnings: [] };
}

/** An UPDATE of pods/ephemeralcontainers carrying an `EphemeralContainers` object (Kubernetes < 1.22, alpha). */
export function reviewLegacyEphemeralContainers(input: unknown, old: unknown, cfg: InjectorConfig, ctx: { namespace?: string } = {}): MutationResult {
  if (!isObject(input) || (input.ephemeralContainers !== undefined && input.ephemeralContainers !== null && !Array.isArray(input.ephemeralContainers))) {
    return { action: 'refuse', message: 'agentgate cannot check these ephemeral containers: the EphemeralContainers object has no list of containers' };
  }
  const meta = isObject(input.metadata) ? input.metadata : {};
  const who = `pod ${ctx.namespace ? `${ctx.namespace}/` : ''}${typeof meta.name === 'string' ? meta.name : '(unnamed)'}`;
  const list = ((input.ephemeralContainers ?? []) as unknown[]).filter(isObject) as unknown as Container[];
  const fresh = added(list, names(isObject(old) ? old.ephemeralContainers : undefined));
  const why = 'this API server (before Kubernetes 1.22) sends the EphemeralContainers object, without the pod\'s labels or volumes, so agentgate cannot tell whether the pod is an agent or which volumes carry its real token';
  for (const c of fresh) {
    const privileged = containerPrivilegeProblem(c, 'ephemeral container');
    if (privileged) return { action: 'refuse', message: `agentgate refuses ephemeral containers for ${who}: ${privileged}; debug without privileges` };
    const mount = (c.volumeMounts ?? []).find((m) => m.name !== IDENTITY_VOLUME);
    if (mount) return { action: 'refuse', message: `agentgate refuses ephemeral containers for ${who}: ephemeral container '${c.name}' mounts volume '${mount.name}', and ${why}; debug without volumeMounts` };
    const secret = firstSecretProblem(containerSecretReferences(c, 'ephemeral container', new Map(), () => true), cfg);
    if (secret) return { action: 'refuse', message: `agentgate refuses ephemeral containers for ${who}: ${secret}` };
  }
  return { action: 'skip', reason: fresh.length ? 'ephemeral containers without volume mounts or Secrets' : 'no ephemeral container added' };
}

function sidecarImages(pod: unknown): string[] {
  if (!isObject(pod) || !isObject(pod.spec)) return [];
  const spec = pod.spec as Record<string, unknown>;
  const all = [...(Array.isArray(spec.initContainers) ? spec.initContainers : []), ...(Array.isArray(spec.containers) ? spec.containers : [])];
  return all.filter((c) => isObject(c) && c.name === SIDECAR_NAME).map((c) => String((c as Record<string, unknown>).image));
}

/**
 * An UPDATE of a pod. Its containers are fixed but for their images, so the one way
 * around the proxy is to swap the proxy's own image for one that hands out the real
 * token it holds. Judged whatever the labels say now: they may change in the same update.
 */
export function reviewPodUpdate(input: unknown, old: unknown, ctx: { namespace?: string } = {}): MutationResult {
  const before = sidecarImages(old);
  if (before.length === 0) return { action: 'skip', reason: 'the pod had no agentgate proxy' };
  const after = sidecarImages(input);
  if (after.length === before.length && after.every((img, i) => img === before[i])) return { action: 'skip', reason: 'the proxy is unchanged' };
  const who = describe((isObject(input) ? input : {}) as Pod, ctx.namespace);
  return {
    action: 'refuse',
    message: `agentgate refuses this update of ${who}: it changes the image of the ${SIDECAR_NAME} container (${before.join(', ')} → ${after.join(', ') || 'none'}), which holds the pod's real credentials; recreate the pod to change the proxy`,
  };
}
