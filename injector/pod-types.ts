// The Kubernetes object shapes the injector reads and writes: the API's JSON, typed
// with @kubernetes/client-node's model interfaces (type-only, nothing loaded at runtime).

import type { V1Pod, V1PodSpec, V1Container, V1Volume, V1VolumeMount, V1EnvVar, V1ObjectMeta } from '@kubernetes/client-node';

export type Pod = V1Pod;
export type PodSpec = V1PodSpec;
export type Container = V1Container;
export type Volume = V1Volume;
export type VolumeMount = V1VolumeMount;
export type EnvVar = V1EnvVar;
export type ObjectMeta = V1ObjectMeta;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
