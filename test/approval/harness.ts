// A running approval service for tests, built by the same startApprovalServer as
// `agentgate approval`: a real OpenID provider (oidc-provider 8) for approvers and
// agents, a service-account issuer (double, see its header) for sidecars, the real
// chained audit writer, and a store (PGlite in memory unless given).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openAuditWriter } from '../../core/audit/open.js';
import type { AuditWriter } from '../../core/audit/open.js';
import type { PodIdentity } from '../../core/identity.js';
import { ApprovalClient } from '../../approval/client.js';
import { parseApprovalConfig } from '../../approval/config.js';
import { startApprovalServer } from '../../approval/server.js';
import type { RunningApprovalServer } from '../../approval/server.js';
import type { ApprovalStore } from '../../approval/store.js';
import { startOidcProvider } from '../support/oidc-provider.js';
import type { OidcProviderHandle } from '../support/oidc-provider.js';
import { createServiceAccountIssuer } from './service-account-issuer.js';
import type { ServiceAccountIssuer } from './service-account-issuer.js';

export const AUDIENCE = 'https://approvals.agentgate.test';

/** Approvers and agents the provider knows, with their groups. `agent-7` is an agent that is also in the approver group. */
export const PRINCIPALS: Record<string, string[]> = {
  'alice@example.com': ['payments-approvers'],
  'bob@example.com': ['payments-approvers', 'sre'],
  'carol@example.com': ['dba'],
  'agent-7': ['payments-approvers'],
};

export const POD_A: PodIdentity = { namespace: 'payments', name: 'agent-a-5f7d', uid: '11111111-aaaa-4aaa-8aaa-111111111111', serviceAccount: 'agent' };
export const POD_B: PodIdentity = { namespace: 'payments', name: 'agent-b-9c2e', uid: '22222222-bbbb-4bbb-8bbb-222222222222', serviceAccount: 'agent' };

/** A clock tests move forward, so expiry is tested without sleeping. */
export class TestClock {
  offsetMs = 0;
  now = () => new Date(Date.now() + this.offsetMs);
  advance(ms: number) {
    this.offsetMs += ms;
  }
}

export interface Idp {
  oidc: OidcProviderHandle;
  sa: ServiceAccountIssuer;
  dir: string;
  close(): Promise<void>;
}

export async function startIdp(): Promise<Idp> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-approval-'));
  const oidc = await startOidcProvider({ audience: AUDIENCE, principals: PRINCIPALS, extraAudiences: ['https://elsewhere.example'] });
  const sa = await createServiceAccountIssuer(dir);
  return {
    oidc, sa, dir,
    async close() {
      await oidc.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function configYaml(idp: Idp, extra = ''): string {
  return `listen: 127.0.0.1:0
metrics: false
publicUrl: http://approvals.example
approvers:
  issuer: ${idp.oidc.issuer}
  audience: ${AUDIENCE}
sidecars:
  issuer: ${idp.sa.issuer}
  jwksFile: ${idp.sa.jwksFile}
${extra}`;
}

export interface Harness {
  srv: RunningApprovalServer;
  url: string;
  clock: TestClock;
  auditFile: string;
  audit: AuditWriter;
  /** The sidecar client of a pod, authenticated with its projected token. */
  sidecar(pod: PodIdentity): Promise<ApprovalClient>;
  /** An authenticated API call; returns status and parsed body. */
  call(token: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: any }>;
  approverToken(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(idp: Idp, opts: { extraYaml?: string; store?: ApprovalStore; name?: string } = {}): Promise<Harness> {
  const file = path.join(idp.dir, `${opts.name ?? 'approval'}.yaml`);
  fs.writeFileSync(file, configYaml(idp, opts.extraYaml));
  const cfg = parseApprovalConfig(fs.readFileSync(file, 'utf8'), file);
  const clock = new TestClock();
  const auditFile = path.join(idp.dir, `${opts.name ?? 'approval'}-audit.log`);
  const audit = await openAuditWriter({ file: auditFile });
  const srv = await startApprovalServer(cfg, { audit, store: opts.store, now: clock.now, sweepMs: 50 });
  const call = async (token: string, method: string, p: string, body?: unknown) => {
    const res = await fetch(`${srv.url}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* leave text */
    }
    return { status: res.status, body: parsed as any };
  };
  return {
    srv, url: srv.url, clock, auditFile, audit, call,
    async sidecar(pod) {
      return new ApprovalClient({ url: srv.url, token: await idp.sa.token(pod) });
    },
    approverToken: (name) => idp.oidc.token(name),
    async close() {
      await srv.close();
      await audit.close();
    },
  };
}

export const UPDATE_SQL = "UPDATE cards SET pan = '4111 1111 1111 1111' WHERE id = 7";
