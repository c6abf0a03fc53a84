// AdmissionReview in, AdmissionReview out. Every input, however broken, gets an
// answer the API server understands: objects we do not handle are allowed
// unchanged; a pod that asked for injection and cannot get it safely is denied
// with a message that says why and what to do.

import type { InjectorConfig } from './config.js';
import { mutatePod } from './mutate.js';
import type { MutationContext, MutationResult } from './mutate.js';
import { mutateEphemeralContainers, reviewLegacyEphemeralContainers, reviewPodUpdate } from './ephemeral.js';
import { createPatch } from './json-patch.js';
import { isObject } from './pod-types.js';
import type { Pod } from './pod-types.js';

export type AdmissionResult = 'injected' | 'unchanged' | 'skipped' | 'refused' | 'ignored' | 'invalid';

export interface AdmissionAnswer {
  /** HTTP status: 200 for every review we could read, 400 when the body was not one. */
  httpStatus: number;
  review: AdmissionReviewResponse;
  result: AdmissionResult;
  /** Why, for the log line (never contains object contents). */
  reason: string;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { status: 'Failure'; code: number; reason: string; message: string };
  warnings?: string[];
}

export interface AdmissionReviewResponse {
  apiVersion: string;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

// v1beta1 has the same request and response shape; the API server expects the
// answer in the version it asked with.
const VERSIONS = new Set(['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']);

function answer(apiVersion: string, response: AdmissionResponse, result: AdmissionResult, reason: string, httpStatus = 200): AdmissionAnswer {
  return { httpStatus, review: { apiVersion, kind: 'AdmissionReview', response }, result, reason };
}

function deny(uid: string, code: number, message: string): AdmissionResponse {
  return { uid, allowed: false, status: { status: 'Failure', code, reason: code === 400 ? 'BadRequest' : 'Forbidden', message } };
}

/** Warnings are shown by kubectl one per line: keep them single-line and bounded. */
function cleanWarnings(ws: string[]): string[] {
  return ws.map((w) => w.replace(/[\r\n]+/g, ' ').slice(0, 512));
}

export interface ReviewOptions {
  version?: string;
}

/** Answers one AdmissionReview body (already read from the request). */
export function reviewAdmission(body: Buffer | string, cfg: InjectorConfig, opts: ReviewOptions = {}): AdmissionAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (err) {
    return answer('admission.k8s.io/v1', deny('', 400, `agentgate injector: the request body is not JSON (${(err as Error).message})`), 'invalid', 'body not JSON', 400);
  }
  if (!isObject(parsed) || parsed.kind !== 'AdmissionReview') {
    return answer('admission.k8s.io/v1', deny('', 400, 'agentgate injector: the request body is not an AdmissionReview'), 'invalid', 'not an AdmissionReview', 400);
  }
  const request = parsed.request;
  const uid = isObject(request) && typeof request.uid === 'string' ? request.uid : '';
  const apiVersion = typeof parsed.apiVersion === 'string' ? parsed.apiVersion : '';
  if (!VERSIONS.has(apiVersion)) {
    // Fail closed: we cannot tell what this review asks, and it may be an agent pod.
    return answer('admission.k8s.io/v1', deny(uid, 400, `agentgate injector: unsupported AdmissionReview apiVersion '${apiVersion}' (supported: admission.k8s.io/v1)`), 'invalid', `apiVersion ${apiVersion}`, 400);
  }
  if (!isObject(request) || uid === '') {
    return answer(apiVersion, deny(uid, 400, 'agentgate injector: the AdmissionReview has no request or no request.uid'), 'invalid', 'no request', 400);
  }

  const kind = isObject(request.kind) ? request.kind : {};
  const resource = isObject(request.resource) ? request.resource : {};
  const isPod = kind.group === '' && kind.version === 'v1' && kind.kind === 'Pod';
  const subResource = typeof request.subResource === 'string' ? request.subResource : '';
  const namespace = typeof request.namespace === 'string' ? request.namespace : undefined;
  if (resource.resource === 'pods' && subResource === 'ephemeralcontainers') {
    if (request.operation !== 'UPDATE') return answer(apiVersion, { uid, allowed: true }, 'ignored', `operation ${String(request.operation)} of ephemeralcontainers`);
    if (isPod) return answerMutation(apiVersion, uid, request.object, () => mutateEphemeralContainers(request.object as Pod, (isObject(request.oldObject) ? request.oldObject : undefined) as Pod | undefined, cfg, { namespace }));
    if (kind.group === '' && kind.version === 'v1' && kind.kind === 'EphemeralContainers') {
      return answerMutation(apiVersion, uid, request.object, () => reviewLegacyEphemeralContainers(request.object, request.oldObject, cfg, { namespace }));
    }
    // Fail closed: a shape we do not know could be adding a container with the real token.
    return answer(apiVersion, deny(uid, 400, `agentgate injector: pods/ephemeralcontainers of kind ${String(kind.kind)} (${String(kind.group)}/${String(kind.version)}) is not one it can check`), 'invalid', `ephemeralcontainers kind ${String(kind.kind)}`);
  }
  if (!isPod || resource.resource !== 'pods' || subResource !== '') {
    return answer(apiVersion, { uid, allowed: true }, 'ignored', `not a pod: ${String(kind.kind)}${subResource ? `/${subResource}` : ''}`);
  }
  if (request.operation === 'UPDATE') return answerMutation(apiVersion, uid, request.object, () => reviewPodUpdate(request.object, request.oldObject, { namespace }));
  if (request.operation !== 'CREATE') {
    // A pod's containers and volumes cannot change after creation; injection happens once, at CREATE.
    return answer(apiVersion, { uid, allowed: true }, 'ignored', `operation ${String(request.operation)}`);
  }

  const ctx: MutationContext = { namespaceOptedIn: true, version: opts.version, namespace };
  return answerMutation(apiVersion, uid, request.object, () => mutatePod(request.object as Pod, cfg, ctx));
}

function answerMutation(apiVersion: string, uid: string, object: unknown, mutate: () => MutationResult): AdmissionAnswer {
  let result: MutationResult;
  try {
    result = mutate();
  } catch (err) {
    // A shape podShapeError did not foresee: refuse rather than let the pod through unprotected.
    return answer(apiVersion, deny(uid, 403, `agentgate injector could not inject this pod: ${(err as Error).message}`), 'refused', 'mutation threw');
  }
  switch (result.action) {
    case 'skip':
      return answer(apiVersion, { uid, allowed: true }, 'skipped', result.reason);
    case 'refuse':
      return answer(apiVersion, deny(uid, 403, result.message), 'refused', result.message);
    case 'inject': {
      const ops = createPatch(object, result.pod);
      const response: AdmissionResponse = { uid, allowed: true };
      if (ops.length) {
        response.patchType = 'JSONPatch';
        response.patch = Buffer.from(JSON.stringify(ops)).toString('base64');
      }
      // v1beta1 responses have no warnings field before 1.19; only v1 carries them.
      if (result.warnings.length && apiVersion === 'admission.k8s.io/v1') response.warnings = cleanWarnings(result.warnings);
      return answer(apiVersion, response, ops.length ? 'injected' : 'unchanged', ops.length ? `${ops.length} patch operations` : 'already injected');
    }
  }
}
