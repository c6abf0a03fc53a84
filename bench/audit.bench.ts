// Audit append throughput: events/s and MB/s through the chained
// writer (mask every string, canonical JSON, SHA-256, pino, fsync batching, one
// fsync at the end) beside the direct path measured in the same run: a plain pino
// write of the very same lines to a file of the same kind, also fsynced once at
// the end. The ratio is the cost of masking + chaining per event. Beside wall
// time, CPU time per event (process.cpuUsage: every thread, so the file writes,
// fsyncs and GC count too) is reported, which a machine shared with other work
// disturbs far less than wall time.

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { Benchmark, BenchResult } from './types.js';
import { openAuditWriter } from '../core/audit/open.js';
import type { AuditEventInput, AuditRecord } from '../core/audit/types.js';

const N = 100_000;
// Events per burst before yielding to the event loop, as a proxy serving many requests would.
const BATCH = 1000;
const yieldToIo = () => new Promise((r) => setImmediate(r));

function makeEvent(i: number): AuditEventInput {
  const t = new Date(Date.UTC(2026, 10, 23, 12, 0, 0, i)).toISOString();
  return {
    auditID: `3f0c8e52-7a41-4d8e-9c1b-${String(i).padStart(12, '0')}`,
    stage: 'ResponseComplete',
    requestReceivedTimestamp: t,
    stageTimestamp: t,
    protocol: 'postgres',
    connection: 'payments',
    statement: i % 10 === 0 ? `select * from cards where pan = '4111 1111 1111 1111' and id = ${i}` : `select id, status from orders where customer_id = ${i} limit 50`,
    statementKinds: ['select'],
    tables: ['public.orders'],
    decision: { action: 'allow', rule: 'read-orders', reason: 'rule read-orders allows select on public.*', enforced: true },
    pod: { namespace: 'payments', name: 'agent-7d9f8b6c5-x2k4q', uid: '8b1f6a5e-0d2c-4f7a-9e3b-1c2d3e4f5a6b', serviceAccount: 'agent' },
    user: { username: 'system:serviceaccount:payments:agent', groups: ['system:serviceaccounts', 'system:serviceaccounts:payments', 'system:authenticated'] },
    session: `pg-${Math.floor(i / 100)}`,
    rows: i % 50,
    bytes: { in: 120, out: 2048 },
    durationMs: 1.25,
  };
}

const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

async function chained(file: string): Promise<{ seconds: number; cpu: number; bytes: number; rss: number }> {
  const w = await openAuditWriter({ file });
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    w.append(makeEvent(i));
    if (i % BATCH === BATCH - 1) await yieldToIo();
  }
  await w.flush();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuSeconds(c0);
  const rss = process.memoryUsage().rss;
  await w.close();
  return { seconds, cpu, bytes: statSync(file).size, rss };
}

async function direct(file: string, records: AuditRecord[]): Promise<{ seconds: number; cpu: number; bytes: number }> {
  const dest = pino.destination({ dest: file, sync: false, minLength: 1 });
  await new Promise((r) => dest.once('ready', r));
  const log = pino({ base: null, timestamp: false }, dest);
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    log.info(records[i]);
    if (i % BATCH === BATCH - 1) await yieldToIo();
  }
  await new Promise<void>((resolve, reject) => dest.flush((err) => (err ? reject(err) : resolve())));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuSeconds(c0);
  dest.end();
  return { seconds, cpu, bytes: statSync(file).size };
}

export const benchmarks: Benchmark[] = [
  {
    name: 'audit-append',
    async run(): Promise<BenchResult[]> {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-audit-bench-'));
      try {
        const c = await chained(path.join(dir, 'chained.log'));
        const text = readFileSync(path.join(dir, 'chained.log'), 'utf8');
        if (text.includes('4111 1111 1111 1111')) throw new Error('audit bench: a raw PAN reached the file');
        // The direct path writes the very records the chained writer produced.
        const records = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditRecord);
        const d = await direct(path.join(dir, 'direct.log'), records);
        const evs = N / c.seconds;
        const dEvs = N / d.seconds;
        const mbs = c.bytes / 1e6 / c.seconds;
        const dMbs = d.bytes / 1e6 / d.seconds;
        const note = `${N} events, ${Math.round(c.bytes / N)} B/event, RSS ${Math.round(c.rss / 1e6)} MB after the chained run`;
        return [
          { bench: 'audit-append', value: evs, unit: 'events/s', direct: dEvs, ratio: evs / dEvs, note },
          { bench: 'audit-append-mbps', value: mbs, unit: 'MB/s', direct: dMbs, ratio: mbs / dMbs },
          { bench: 'audit-append-us-per-event', value: (c.seconds / N) * 1e6, unit: 'us', direct: (d.seconds / N) * 1e6, ratio: c.seconds / d.seconds },
          { bench: 'audit-append-cpu-us-per-event', value: (c.cpu / N) * 1e6, unit: 'us', direct: (d.cpu / N) * 1e6, ratio: c.cpu / d.cpu, note: 'CPU time of all threads; the chained side also builds each event object' },
        ];
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
