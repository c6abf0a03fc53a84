// Who is making a request. Every proxy resolves one of these before it decides,
// and every audit event and approval request carries it.

export interface PodIdentity {
  namespace: string;
  name: string;
  uid: string;
  serviceAccount: string;
}

export interface Identity {
  /** The name policies match `subjects` against, e.g. `system:serviceaccount:payments:agent` or an OIDC `sub`. */
  subject: string;
  /** Groups policies match `groups` against (OIDC groups claim; service accounts get the Kubernetes ones). */
  groups: string[];
  /** How the subject was established. */
  via: 'local-token' | 'oidc' | 'trust';
  /** OIDC issuer when `via` is `oidc`. */
  issuer?: string;
  /** The pod the request came from; always recorded beside an OIDC subject. */
  pod?: PodIdentity;
}

export function serviceAccountSubject(namespace: string, serviceAccount: string): string {
  return `system:serviceaccount:${namespace}:${serviceAccount}`;
}

export function serviceAccountGroups(namespace: string): string[] {
  return ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'];
}

/** The pod identity from the downward-API env the injector sets on the sidecar. */
export function podIdentityFromEnv(env: NodeJS.ProcessEnv = process.env): PodIdentity | undefined {
  const namespace = env.AGENTGATE_POD_NAMESPACE;
  const serviceAccount = env.AGENTGATE_SERVICE_ACCOUNT;
  if (!namespace || !serviceAccount) return undefined;
  return { namespace, name: env.AGENTGATE_POD_NAME ?? '', uid: env.AGENTGATE_POD_UID ?? '', serviceAccount };
}
