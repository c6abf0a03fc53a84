// PLACEHOLDER owned by the Kubernetes-proxy work: the schema and type of the sidecar
// config's `kubernetes` block. The sidecar config loader imports `kubernetesConfigSchema`.
import type { Schema } from '../../core/yaml/validate.js';

export interface KubernetesConfig {
  listen: string;
  identityDir: string;
  [key: string]: unknown;
}

export const kubernetesConfigSchema: Schema = { kind: 'any' };
