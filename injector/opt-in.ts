// Whether a pod is an agent pod: its `agentgate.dev/inject` label and its
// namespace's. The label takes exactly `enabled` or `disabled` (anything else is
// refused, as the webhook's selectors match values exactly), and in an opted-in
// namespace `disabled` is honoured only for the namespaces and service accounts the
// injector config lists: an opt-out anyone could write is a pod with the real token
// and no proxy.

import type { InjectorConfig } from './config.js';
import type { Pod } from './pod-types.js';
import { isObject } from './pod-types.js';
import { INJECT_LABEL } from './names.js';

export type OptIn =
  | { action: 'inject' }
  | { action: 'skip'; reason: string }
  | { action: 'refuse'; message: string };

export interface OptInContext {
  /** The pod is in a namespace labeled `agentgate.dev/inject: enabled`. */
  namespaceOptedIn: boolean;
  /** The pod's namespace, when known (a manifest may not say). */
  namespace?: string;
}

/** The service account a pod runs as, as the API server defaults it. */
export function serviceAccountOf(pod: Pod): string {
  const spec = (isObject(pod.spec) ? pod.spec : {}) as Record<string, unknown>;
  const name = spec.serviceAccountName || spec.serviceAccount;
  return typeof name === 'string' && name !== '' ? name : 'default';
}

export function mayOptOut(cfg: InjectorConfig, namespace: string | undefined, serviceAccount: string): boolean {
  if (namespace === undefined) return false;
  return cfg.optOut.namespaces.includes(namespace) || cfg.optOut.serviceAccounts.includes(`${namespace}/${serviceAccount}`);
}

export function optInOf(pod: Pod, cfg: InjectorConfig, ctx: OptInContext, who: string): OptIn {
  const labels = isObject(pod) && isObject(pod.metadata) && isObject(pod.metadata.labels) ? (pod.metadata.labels as Record<string, unknown>) : {};
  const label = labels[INJECT_LABEL];
  if (label !== undefined && label !== 'enabled' && label !== 'disabled') {
    return {
      action: 'refuse',
      message: `agentgate refuses ${who}: label ${INJECT_LABEL}: expected "enabled" or "disabled", got '${String(label)}' (values are case-sensitive, as the webhook's selectors match them)`,
    };
  }
  if (label === 'disabled') {
    if (!ctx.namespaceOptedIn) return { action: 'skip', reason: `the pod is labeled ${INJECT_LABEL}=disabled` };
    const sa = serviceAccountOf(pod);
    if (mayOptOut(cfg, ctx.namespace, sa)) return { action: 'skip', reason: `the pod is labeled ${INJECT_LABEL}=disabled and the injector config lets ${ctx.namespace}/${sa} opt out` };
    return {
      action: 'refuse',
      message: `agentgate refuses ${who}: it is labeled ${INJECT_LABEL}=disabled in a namespace that is opted in, but only the namespaces and service accounts in the injector config's optOut may opt out, and ${ctx.namespace === undefined ? `the namespace is not known (service account '${sa}'; give the manifest a namespace or use --namespace)` : `neither namespace '${ctx.namespace}' nor service account '${ctx.namespace}/${sa}' is listed`}`,
    };
  }
  if (label !== 'enabled' && !ctx.namespaceOptedIn) return { action: 'skip', reason: `the pod is not labeled ${INJECT_LABEL}=enabled` };
  return { action: 'inject' };
}
