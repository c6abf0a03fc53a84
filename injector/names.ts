// The names, paths and ports the injector writes into pods. They are the contract
// with the sidecar (which reads the mounts and env below) and with the
// ValidatingAdmissionPolicy backstop, so they live in one place.

export const INJECT_LABEL = 'agentgate.dev/inject';
export const STATUS_ANNOTATION = 'agentgate.dev/status';
export const CONFIG_ANNOTATION = 'agentgate.dev/config';
export const CONNECTIONS_ANNOTATION = 'agentgate.dev/connections';
export const NATIVE_SIDECAR_ANNOTATION = 'agentgate.dev/native-sidecar';
/** "true" gives the sidecar a Kubernetes token even when the pod sets automountServiceAccountToken: false. */
export const KUBERNETES_ACCESS_ANNOTATION = 'agentgate.dev/kubernetes-access';
/** Names (never values) of env variables the injector replaced, per container. */
export const REPLACED_ENV_ANNOTATION = 'agentgate.dev/replaced-env';
/** Sidecar resource overrides, each checked against the configured bounds. */
export const RESOURCE_ANNOTATIONS = {
  cpuRequest: 'agentgate.dev/proxy-cpu-request',
  cpuLimit: 'agentgate.dev/proxy-cpu-limit',
  memoryRequest: 'agentgate.dev/proxy-memory-request',
  memoryLimit: 'agentgate.dev/proxy-memory-limit',
} as const;
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';

export const SIDECAR_NAME = 'agentgate-proxy';
export const IDENTITY_VOLUME = 'agentgate-identity';
export const APPROVAL_TOKEN_VOLUME = 'agentgate-approval-token';
export const CONFIG_VOLUME = 'agentgate-config';
/** Added only when the pod has no token volume of its own (automountServiceAccountToken: false). */
export const OWN_TOKEN_VOLUME = 'agentgate-kube-api-access';
export const CONNECTION_VOLUME_PREFIX = 'agentgate-conn-';

/** Where in-cluster clients look for token, ca.crt and namespace. */
export const SA_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';
/**
 * In the sidecar, the identity volume is read-write at the service-account path
 * (the sidecar's default `kubernetes.identityDir`), and the real token is here.
 */
export const IDENTITY_DIR = SA_PATH;
export const KUBE_API_DIR = '/var/run/secrets/agentgate/kube-api';
export const APPROVAL_TOKEN_DIR = '/var/run/secrets/agentgate/approval';
export const CONFIG_DIR = '/etc/agentgate';
export const CONFIG_FILE = `${CONFIG_DIR}/config.yaml`;
export const CONNECTIONS_DIR = '/var/run/secrets/agentgate/connections';

export const PORTS = {
  kubernetes: 15443,
  postgresFirst: 15432,
  health: 15021,
  metrics: 15090,
} as const;

/**
 * The kubelet's root directory: every volume of every pod on the node lives below it
 * (`pods/<uid>/volumes/…`, the real tokens included), so no agent pod may mount it,
 * anything below it, or any directory above it.
 */
export const KUBELET_DIR = '/var/lib/kubelet';
/**
 * A hostPath that reaches the kubelet's directory. One regular expression (RE2 and
 * JavaScript read it alike) so that the ValidatingAdmissionPolicy checks exactly
 * what the webhook checks: `/`, `/var`, `/var/lib`, `/var/lib/kubelet` and below,
 * with any number of slashes.
 */
export const KUBELET_HOST_PATH = '^/+(var(/+lib(/+kubelet(/.*)?)?)?)?/*$';
/** A hostPath the kubelet would resolve in a way a prefix check cannot follow: relative, or with `.`/`..` segments. */
export const UNCLEAR_HOST_PATH = '^([^/]|$)|(^|/)[.][.]?(/|$)';
