// The sidecar container and the volumes only it mounts. Every field the API server
// would default is written out, so the stored pod equals what we produced and a
// reinvocation of the webhook finds nothing to change.

import type { Container, Volume, VolumeMount, EnvVar } from './pod-types.js';
import type { ConnectionConfig, InjectorConfig, ResourceList } from './config.js';
import {
  SIDECAR_NAME, IDENTITY_VOLUME, APPROVAL_TOKEN_VOLUME, CONFIG_VOLUME, OWN_TOKEN_VOLUME, CONNECTION_VOLUME_PREFIX,
  KUBE_API_DIR, IDENTITY_DIR, APPROVAL_TOKEN_DIR, CONFIG_DIR, CONFIG_FILE, CONNECTIONS_DIR, PORTS,
} from './names.js';

export type Mode = 'native' | 'classic';

export interface SidecarPlan {
  mode: Mode;
  configMap: string;
  /** Volume mounted at the service-account path in the sidecar (its upstream token); none ⇒ no Kubernetes access upstream. */
  tokenVolume?: string;
  connections: [string, ConnectionConfig][];
  resources: { requests: ResourceList; limits: ResourceList };
}

/**
 * The classic-mode postStart hook: the kubelet starts the next container only when
 * this returns, so the agent starts after the proxy is ready. It runs inside the
 * sidecar image, which has `node`; the health port listens on the pod IP.
 */
export function defaultReadyCommand(timeoutSeconds: number): string[] {
  const script =
    `const h=require('http'),end=Date.now()+${timeoutSeconds * 1000},ip=process.env.AGENTGATE_POD_IP||'127.0.0.1';` +
    `function retry(){if(Date.now()>end){console.error('agentgate-proxy not ready after ${timeoutSeconds}s');process.exit(1)}setTimeout(probe,200)}` +
    `function probe(){h.get({host:ip,port:${PORTS.health},path:'/healthz/ready',timeout:1000},r=>{r.resume();r.statusCode===200?process.exit(0):retry()}).on('error',retry).on('timeout',function(){this.destroy()})}` +
    `probe()`;
  return ['node', '-e', script];
}

function fieldEnv(name: string, fieldPath: string): EnvVar {
  return { name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } };
}

function probe(path: string, period: number, failureThreshold: number) {
  return {
    httpGet: { path, port: PORTS.health, scheme: 'HTTP' },
    initialDelaySeconds: 0,
    timeoutSeconds: 1,
    periodSeconds: period,
    successThreshold: 1,
    failureThreshold,
  };
}

function resources(r: SidecarPlan['resources']) {
  const clean = (l: ResourceList) => Object.fromEntries(Object.entries(l).filter(([, v]) => v !== undefined)) as Record<string, string>;
  return { requests: clean(r.requests), limits: clean(r.limits) };
}

export function connectionVolumeName(name: string): string {
  return `${CONNECTION_VOLUME_PREFIX}${name}`;
}

export function buildSidecar(cfg: InjectorConfig, plan: SidecarPlan): Container {
  const mounts: VolumeMount[] = [{ name: IDENTITY_VOLUME, mountPath: IDENTITY_DIR }];
  if (plan.tokenVolume) mounts.push({ name: plan.tokenVolume, mountPath: KUBE_API_DIR, readOnly: true });
  mounts.push({ name: APPROVAL_TOKEN_VOLUME, mountPath: APPROVAL_TOKEN_DIR, readOnly: true });
  mounts.push({ name: CONFIG_VOLUME, mountPath: CONFIG_DIR, readOnly: true });
  for (const [name, c] of plan.connections) {
    if (c.secret) mounts.push({ name: connectionVolumeName(name), mountPath: `${CONNECTIONS_DIR}/${name}`, readOnly: true });
  }
  const c: Container = {
    name: SIDECAR_NAME,
    image: cfg.image,
    imagePullPolicy: cfg.imagePullPolicy,
    args: ['sidecar', '--config', CONFIG_FILE],
    env: [
      fieldEnv('AGENTGATE_POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('AGENTGATE_POD_NAME', 'metadata.name'),
      fieldEnv('AGENTGATE_POD_UID', 'metadata.uid'),
      fieldEnv('AGENTGATE_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      fieldEnv('AGENTGATE_POD_IP', 'status.podIP'),
      { name: 'AGENTGATE_IDENTITY_DIR', value: IDENTITY_DIR },
      { name: 'AGENTGATE_APPROVAL_URL', value: cfg.approval.url },
      { name: 'AGENTGATE_APPROVAL_TOKEN_FILE', value: `${APPROVAL_TOKEN_DIR}/token` },
      { name: 'AGENTGATE_CONNECTIONS', value: plan.connections.map(([n]) => n).join(',') },
      // Empty when the pod has no token for the API server: the proxy then denies every Kubernetes request.
      { name: 'AGENTGATE_KUBERNETES_TOKEN_FILE', value: plan.tokenVolume ? `${KUBE_API_DIR}/token` : '' },
      { name: 'AGENTGATE_KUBERNETES_CA_FILE', value: plan.tokenVolume ? `${KUBE_API_DIR}/ca.crt` : '' },
    ],
    ports: [
      { name: 'ag-health', containerPort: PORTS.health, protocol: 'TCP' },
      { name: 'ag-metrics', containerPort: PORTS.metrics, protocol: 'TCP' },
    ],
    resources: resources(plan.resources),
    volumeMounts: mounts,
    startupProbe: probe('/healthz/ready', 1, cfg.readyTimeoutSeconds),
    readinessProbe: probe('/healthz/ready', 5, 3),
    livenessProbe: probe('/healthz/live', 10, 3),
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'FallbackToLogsOnError',
    securityContext: {
      runAsNonRoot: true,
      runAsUser: cfg.runAsUser,
      runAsGroup: cfg.runAsGroup,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
  if (plan.mode === 'native') {
    c.restartPolicy = 'Always';
  } else {
    c.lifecycle = { postStart: { exec: { command: cfg.classicReadyCommand ?? defaultReadyCommand(cfg.readyTimeoutSeconds) } } };
  }
  return c;
}

/** The volumes the injector owns, in a fixed order. */
export function buildVolumes(cfg: InjectorConfig, plan: SidecarPlan, addOwnToken: boolean): Volume[] {
  const vols: Volume[] = [
    { name: IDENTITY_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: cfg.identitySizeLimit } },
    {
      name: APPROVAL_TOKEN_VOLUME,
      projected: {
        defaultMode: 0o444,
        sources: [{ serviceAccountToken: { audience: cfg.approval.audience, expirationSeconds: cfg.approval.tokenExpirationSeconds, path: 'token' } }],
      },
    },
    // The whole ConfigMap, so the sidecar config can name policy files beside it.
    { name: CONFIG_VOLUME, configMap: { name: plan.configMap, defaultMode: 0o444 } },
  ];
  for (const [name, c] of plan.connections) {
    if (c.secret) vols.push({ name: connectionVolumeName(name), secret: { secretName: c.secret, defaultMode: 0o444 } });
  }
  if (addOwnToken) vols.push(serviceAccountTokenVolume(OWN_TOKEN_VOLUME));
  return vols;
}

/** The projected volume the ServiceAccount admission plugin adds (bound service-account token). */
export function serviceAccountTokenVolume(name: string): Volume {
  return {
    name,
    projected: {
      defaultMode: 420,
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  };
}
