// The `agentgate.dev/status` annotation: what the injector put into the pod. It is
// the record an operator reads, the input the next (re)invocation uses to find the
// token volume it chose, and what the ValidatingAdmissionPolicy keys on.

import { isObject } from './pod-types.js';

export interface InjectionStatus {
  version: string;
  mode: 'native' | 'classic';
  sidecar: string;
  image: string;
  config: string;
  /** The volume holding the real service-account token, mounted only into the sidecar. */
  tokenVolume: string | null;
  connections: string[];
  volumes: string[];
  /** The containers (init and regular) whose token and env were rewritten. */
  initContainers: string[];
  containers: string[];
}

export function encodeStatus(s: InjectionStatus): string {
  // Fixed key order, so that the same injection always yields the same bytes.
  return JSON.stringify({
    version: s.version,
    mode: s.mode,
    sidecar: s.sidecar,
    image: s.image,
    config: s.config,
    tokenVolume: s.tokenVolume,
    connections: s.connections,
    volumes: s.volumes,
    initContainers: s.initContainers,
    containers: s.containers,
  });
}

/** The previous status, or undefined when absent or not ours (a forged or garbled value is ignored, not trusted). */
export function decodeStatus(text: string | undefined): Partial<InjectionStatus> | undefined {
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (!isObject(v)) return undefined;
    return { tokenVolume: typeof v.tokenVolume === 'string' ? v.tokenVolume : undefined };
  } catch {
    return undefined;
  }
}
