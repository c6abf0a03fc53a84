// Builds audit files record by record with the real chain code, so verify tests
// can tamper with exact lines.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GENESIS_HASH, seal } from '../../../core/audit/chain.js';
import type { AuditEventInput, AuditRecord } from '../../../core/audit/types.js';

export function tempDir(prefix = 'agentgate-audit-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function event(i: number, extra: Partial<AuditEventInput> = {}): AuditEventInput {
  const t = new Date(Date.UTC(2026, 10, 23, 12, 0, i)).toISOString();
  return {
    auditID: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    stage: 'ResponseComplete',
    requestReceivedTimestamp: t,
    stageTimestamp: t,
    protocol: 'postgres',
    connection: 'payments',
    statement: `select id from orders where id = ${i}`,
    decision: { action: 'allow', rule: 'read-orders', reason: 'rule read-orders allows select', enforced: true },
    ...extra,
  };
}

/** The record the writer puts first in a file that continues a rotated one. */
export function continuation(i: number, previousFile: string): AuditEventInput {
  return { ...event(i), protocol: 'system', event: 'audit-file-continued', annotations: { 'agentgate.dev/previous-file': previousFile }, statement: undefined, connection: undefined, decision: undefined };
}

/** Records seq from..to, chained from prevHash; seqs in `continued` are rotation markers (the first line of a rotated-to file). */
export function chain(from: number, to: number, prevHash = GENESIS_HASH, continued: number[] = []): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = prevHash;
  for (let i = from; i <= to; i++) {
    const r = seal(continued.includes(i) ? continuation(i, `audit.log.${String(i - 1).padStart(12, '0')}`) : event(i), i, prev) as AuditRecord;
    out.push(r);
    prev = r.hash;
  }
  return out;
}

export const lineOf = (r: object) => `${JSON.stringify(r)}\n`;

export function writeLines(file: string, lines: string[]): string {
  writeFileSync(file, lines.join(''));
  return file;
}
