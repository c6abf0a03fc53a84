// The ValidatingAdmissionPolicy's parameters, from the injector config: the
// backstop checks the same allow-list and opt-outs as the webhook. One key per
// entry, because CEL can test a map key without string functions.

import { stringify } from 'yaml';
import type { InjectorConfig } from './config.js';

export const POLICY_PARAMS_NAME = 'agentgate-injector-policy';

export function policyParams(cfg: InjectorConfig, namespace = 'agentgate-system'): Record<string, unknown> {
  const data: Record<string, string> = {};
  for (const s of cfg.allowedSecrets) data[`allowed-secret.${s}`] = '';
  for (const n of cfg.optOut.namespaces) data[`opt-out-namespace.${n}`] = '';
  // A namespace name has no dot, so the first dot ends it.
  for (const sa of cfg.optOut.serviceAccounts) data[`opt-out-service-account.${sa.replace('/', '.')}`] = '';
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: POLICY_PARAMS_NAME, namespace, labels: { 'app.kubernetes.io/name': 'agentgate', 'app.kubernetes.io/component': 'injector' } },
    data,
  };
}

export function policyParamsYaml(cfg: InjectorConfig): string {
  return stringify(policyParams(cfg), { lineWidth: 0 });
}
