// Token rewriting: which volumes carry a real credential for the Kubernetes API,
// and how an agent container's mounts change so that it can read none of them.
//
// Something must stay mounted at the service-account path in every agent
// container: the API server's ServiceAccount admission step runs again after
// webhooks and mounts the real token into any container that has nothing there.

import type { Container, Pod, Volume, VolumeMount } from './pod-types.js';
import { IDENTITY_VOLUME, OWN_TOKEN_VOLUME, SA_PATH } from './names.js';

function normalize(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

/** A mount at the service-account path or below it (a subPath mount over `token` would shadow ours). */
export function touchesServiceAccountPath(mountPath: string): boolean {
  const p = normalize(mountPath);
  return p === SA_PATH || p.startsWith(`${SA_PATH}/`);
}

const LEGACY_TOKEN_SECRET = /-token-[a-z0-9]{5}$/;

/** A Secret volume named like the legacy token Secret the ServiceAccount admission plugin mounts (`<sa>-token-<5 chars>`). */
export function isLegacyTokenSecretVolume(v: Volume): boolean {
  return v.secret?.secretName !== undefined && LEGACY_TOKEN_SECRET.test(v.secret.secretName);
}

/** The volume the ServiceAccount admission plugin adds (bound-token `kube-api-access-*` or legacy `<sa>-token-*` Secret). */
export function looksLikeServiceAccountVolume(v: Volume): boolean {
  if (v.projected?.sources?.some((s) => s.serviceAccountToken !== undefined)) return true;
  if (isLegacyTokenSecretVolume(v)) return true;
  return false;
}

export interface CredentialVolumes {
  /** The volume the sidecar mounts at the service-account path (its upstream token), if any. */
  primary?: string;
  /** Every volume no agent container may mount anywhere. */
  all: Set<string>;
}

/**
 * Finds the credential volumes of a pod. `previous` is the token volume recorded in
 * the status annotation by an earlier injection, whose agent mounts are already gone.
 * `ours` are the injector's own volumes, handled separately.
 */
export function findCredentialVolumes(pod: Pod, previous: string | undefined, ours: (name: string) => boolean): CredentialVolumes {
  const volumes = pod.spec?.volumes ?? [];
  const byName = new Map(volumes.map((v) => [v.name, v]));
  const all = new Set<string>();
  const mountedAtPath: string[] = [];
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? []), ...((pod.spec?.ephemeralContainers ?? []) as Container[])];
  for (const c of containers) {
    for (const m of c.volumeMounts ?? []) {
      if (m.name !== IDENTITY_VOLUME && touchesServiceAccountPath(m.mountPath) && byName.has(m.name) && !ours(m.name)) mountedAtPath.push(m.name);
    }
  }
  for (const n of mountedAtPath) all.add(n);
  for (const v of volumes) if (!ours(v.name) && looksLikeServiceAccountVolume(v)) all.add(v.name);
  const hasOwn = byName.has(OWN_TOKEN_VOLUME);

  // Preference: what we chose before (stable across reinvocations), the API server's
  // own token volume, then whatever the user mounted at the path themselves.
  let primary: string | undefined;
  if (previous && byName.has(previous) && (previous === OWN_TOKEN_VOLUME || !ours(previous))) primary = previous;
  primary ??= volumes.find((v) => !ours(v.name) && v.projected?.sources?.some((s) => s.serviceAccountToken) && v.name.startsWith('kube-api-access-'))?.name;
  primary ??= volumes.find((v) => !ours(v.name) && looksLikeServiceAccountVolume(v))?.name;
  primary ??= mountedAtPath[0];
  primary ??= hasOwn ? OWN_TOKEN_VOLUME : undefined;
  if (primary) all.add(primary);
  return { primary, all };
}

/**
 * An agent container with every credential mount removed (the token volumes, and
 * the sidecar's own volumes: approval token, database credentials) and the identity
 * volume mounted read-only at the service-account path, in the place of the first
 * mount it replaces (so re-running leaves the order unchanged).
 */
export function rewriteAgentMounts(c: Container, credentials: Set<string>, ours: (name: string) => boolean): Container {
  const identity: VolumeMount = { name: IDENTITY_VOLUME, mountPath: SA_PATH, readOnly: true };
  const out: VolumeMount[] = [];
  let placed = false;
  for (const m of c.volumeMounts ?? []) {
    const drop = credentials.has(m.name) || ours(m.name) || touchesServiceAccountPath(m.mountPath);
    if (!drop) {
      out.push(m);
    } else if (!placed && (m.name === IDENTITY_VOLUME || normalize(m.mountPath) === SA_PATH)) {
      out.push(identity);
      placed = true;
    }
  }
  if (!placed) out.push(identity);
  return { ...c, volumeMounts: out };
}
