// What the API server's ServiceAccount admission plugin does to a new pod, so that
// `agentgate inject` outputs the pod the cluster would run: with bound service-account
// tokens it adds a projected `kube-api-access-<5 chars>` volume and mounts it read-only
// at the service-account path in every container that has nothing mounted there.
// The plugin picks the suffix at random; we derive it from the object's identity so
// the output is reproducible.

import { createHash } from 'node:crypto';
import type { Container, Pod } from './pod-types.js';
import { SA_PATH } from './names.js';
import { serviceAccountTokenVolume } from './sidecar-spec.js';

// The alphabet of Kubernetes' rand.String (no vowels, no look-alikes).
const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

export function tokenVolumeSuffix(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  let s = '';
  for (let i = 0; i < 5; i++) s += ALPHABET[h[i] % ALPHABET.length];
  return s;
}

/** The pod after the ServiceAccount admission step (a copy; the input is not changed). */
export function admitServiceAccount(input: Pod, seed: string): Pod {
  const pod = structuredClone(input);
  const spec = pod.spec;
  if (!spec) return pod;
  spec.serviceAccountName ||= 'default';
  if (spec.automountServiceAccountToken === false) return pod;
  const needs = (c: Container) => !(c.volumeMounts ?? []).some((m) => m.mountPath.replace(/\/+$/, '') === SA_PATH);
  const all = [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
  if (!all.some(needs)) return pod;
  let volume = (spec.volumes ?? []).find((v) => v.name.startsWith('kube-api-access-'))?.name;
  if (!volume) {
    volume = `kube-api-access-${tokenVolumeSuffix(seed)}`;
    spec.volumes = [...(spec.volumes ?? []), serviceAccountTokenVolume(volume)];
  }
  const add = (c: Container): Container => (needs(c) ? { ...c, volumeMounts: [...(c.volumeMounts ?? []), { name: volume!, readOnly: true, mountPath: SA_PATH }] } : c);
  if (spec.initContainers) spec.initContainers = spec.initContainers.map(add);
  spec.containers = spec.containers.map(add);
  return pod;
}
