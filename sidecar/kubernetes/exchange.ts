// One request on its way through the proxy, and the stages it passes. A stage takes the
// handler after it and returns a handler (the shape of undici's composed interceptors):
// it either answers the exchange itself (a refusal) or calls next. The chains are composed
// once, at load time; plain requests and upgrades share their first stages and differ in
// their last (an HTTP relay, a WebSocket or SPDY session).

import type { IncomingMessage } from 'node:http';
import type { CanonicalTarget } from '../../core/kube/canonical.js';
import type { Identity } from '../../core/identity.js';
import type { Decision, KubeRequest, Policy } from '../../core/policy/types.js';
import type { AuditContext } from './audit-event.js';
import type { buildEvent } from './audit-event.js';
import type { ForwardDeps } from './forward.js';
import type { StatusObject } from './status.js';

export type AuditExtra = Parameters<typeof buildEvent>[3];

export interface Exchange {
  readonly req: IncomingMessage;
  readonly ctx: AuditContext;
  readonly deps: ForwardDeps;
  /** Metric labels, refined as the stages learn more. */
  readonly labels: { verb: string; group: string; decision: string };
  target?: CanonicalTarget;
  identity?: Identity;
  request?: KubeRequest;
  decision?: Decision;
  policy?: Policy;
  /** The headers to send upstream (the real credential included). */
  headers?: Record<string, string | string[]>;
  /** The decision is an enforced `approve` and an approval service is configured. */
  held?: boolean;
  /** A plain request's body, once read. */
  body?: Buffer;
  /** What the audit event records of the request body. */
  requestObject?: unknown;
  /** Answers with `s` on this exchange's transport and records the outcome. */
  refuse(s: StatusObject, extra?: AuditExtra, headers?: Record<string, string>): void;
  /** Records that the client went away before an answer (499). */
  abandon(message: string, extra?: AuditExtra): void;
  /** Calls `cb` when the client goes away; returns the unsubscribe. */
  onGone(cb: () => void): () => void;
}

export type Handler<X extends Exchange = Exchange> = (x: X) => Promise<void>;
export type Stage<X extends Exchange = Exchange> = (next: Handler<X>) => Handler<X>;
/** A stage that serves every kind of exchange (it touches only what Exchange has). */
export type SharedStage = <X extends Exchange>(next: Handler<X>) => Handler<X>;

/** `stages[0]` runs first; `last` runs once every stage has passed the exchange on. */
export function compose<X extends Exchange>(stages: ReadonlyArray<Stage<X>>, last: Handler<X>): Handler<X> {
  let h = last;
  for (let i = stages.length - 1; i >= 0; i--) h = stages[i]!(h);
  return h;
}

/** The fields a stage sets before `next`, for the stages after it (a refusal never reaches them). */
export type Classified<X extends Exchange = Exchange> = X & Required<Pick<X, 'target' | 'identity' | 'request'>>;
export type Decided<X extends Exchange = Exchange> = Classified<X> & Required<Pick<X, 'decision' | 'policy' | 'headers'>>;
