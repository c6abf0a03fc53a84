// A real PostgreSQL cluster with a `payments` database, and the sidecar started
// in-process in front of it on free ports, with a real policy file and audit file.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { startCluster } from '../../support/postgres.js';
import type { PgCluster, ClusterOptions } from '../../support/postgres.js';
import { freePort } from '../../support/ports.js';
import { parseSidecarConfig } from '../../../sidecar/config.js';
import { startSidecar } from '../../../sidecar/run.js';
import type { RunningSidecar } from '../../../sidecar/run.js';

export const run = promisify(execFile);

export const AGENT_PASSWORD = 'agent-secret-Ü1';

export const TEST_POLICY = `apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: pg-proxy-test }
spec:
  default: deny
  masking:
    columns: [public.cards.cvv]
  rules:
    - name: agents-work-with-data
      postgres:
        statements: [select, insert, update, delete, transaction, set, show, copy-to, copy-from, create, truncate, lock, listen, notify, other]
        # Beside the read-only built-ins: what the tests sleep on, and the test's own function that flips a setting.
        functions: [pg_catalog.pg_sleep, public.flip_scs]
      action: allow
    - name: builtin:procedural-code
      description: this policy lets unknown utility statements (other) through; DO and CALL still need approval
      postgres: { statements: [do, call] }
      action: approve
    - name: no-drops
      description: agents never drop objects
      postgres: { statements: [drop] }
      action: deny
`;

export interface Harness {
  cluster: PgCluster;
  dir: string;
  sidecar?: RunningSidecar;
  auditFile: string;
  policyFile: string;
  passwordFile: string;
  proxyPort: number;
  healthPort: number;
  metricsPort: number;
  /** pg.Client options for the proxy. */
  clientConfig(extra?: Partial<pg.ClientConfig>): pg.ClientConfig;
  proxyEnv(): NodeJS.ProcessEnv;
  /** Writes the sidecar config for the given extra YAML under the connection and starts it. */
  startProxy(opts?: { upstream?: string; connection?: string; extraTop?: string }): Promise<RunningSidecar>;
  stopProxy(): Promise<void>;
  stop(): Promise<void>;
}

export const quietLog = pino({ level: process.env.AGENTGATE_TEST_LOG ?? 'silent' });

export async function startHarness(clusterOpts: ClusterOptions = {}): Promise<Harness> {
  const cluster = await startCluster(clusterOpts);
  await cluster.createUser('agent_rw', AGENT_PASSWORD);
  await cluster.createDatabase('payments', 'agent_rw');
  await cluster.sql(
    `set role agent_rw;
     create table cards(id int primary key, holder text, pan text, pan_num numeric, pan_int8 int8, cvv text, doc json, docb jsonb);
     insert into cards values
       (1, 'Ada', '4111 1111 1111 1111', 4111111111111111, 4111111111111111, '123', '{"pan":"5555555555554444","cvv":"999"}', '{"card":{"number":"4012888888881881"}}'),
       (2, 'Bob', 'no card here', 42, 42, '456', '{"note":"nothing"}', '{"n":1}');
     create table items(id serial primary key, name text, price int);
     insert into items(name, price) select 'item ' || g, g from generate_series(1, 1000) g;`,
    'payments',
  );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-pgproxy-'));
  const passwordFile = path.join(dir, 'password');
  fs.writeFileSync(passwordFile, AGENT_PASSWORD + '\n', { mode: 0o600 });
  const policyFile = path.join(dir, 'policy.yaml');
  fs.writeFileSync(policyFile, TEST_POLICY);
  const h: Harness = {
    cluster,
    dir,
    auditFile: path.join(dir, 'audit.jsonl'),
    policyFile,
    passwordFile,
    proxyPort: await freePort(),
    healthPort: await freePort(),
    metricsPort: await freePort(),
    clientConfig(extra = {}) {
      return { host: '127.0.0.1', port: h.proxyPort, user: 'whoever', database: 'whatever', ...extra };
    },
    proxyEnv() {
      return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(h.proxyPort), PGUSER: 'agent', PGDATABASE: 'payments', PGSSLMODE: 'prefer', PGCONNECT_TIMEOUT: '10' };
    },
    async startProxy(o = {}) {
      const upstream = o.upstream ?? `
      host: 127.0.0.1
      port: ${cluster.port}
      database: payments
      user: agent_rw
      passwordFile: ${passwordFile}`;
      const yaml = `postgres:
  - name: payments
    listen: 127.0.0.1:${h.proxyPort}
    upstream:${upstream}
${o.connection ?? ''}
policy: { file: ${policyFile} }
audit: { file: ${h.auditFile} }
health: { listen: 127.0.0.1:${h.healthPort} }
metrics: { listen: 127.0.0.1:${h.metricsPort} }
drainSeconds: 5
${o.extraTop ?? ''}`;
      const cfgFile = path.join(dir, 'sidecar.yaml');
      fs.writeFileSync(cfgFile, yaml);
      h.sidecar = await startSidecar(parseSidecarConfig(yaml, cfgFile), { log: quietLog, servePorts: true });
      return h.sidecar;
    },
    async stopProxy() {
      await h.sidecar?.stop();
      h.sidecar = undefined;
    },
    async stop() {
      try {
        await h.stopProxy();
      } finally {
        await cluster.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return h;
}

export function readAudit(file: string): Record<string, any>[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/** Runs psql against the proxy; resolves with stdout, stderr and the exit code (never throws). */
export function psql(env: NodeJS.ProcessEnv, args: string[], input?: string): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    const child = execFile('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=0', ...args], { env, timeout: 30_000, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, code: err ? ((err as { code?: number }).code ?? 1) : 0 });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}
