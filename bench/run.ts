// `make bench [BENCH=PREFIX]`: runs every benchmark in dist/bench/*.bench.js whose
// name starts with PREFIX, prints a readable table, then one JSON line per figure:
//   {"bench": NAME, "value": N, "unit": U, "direct": D, "ratio": R}
// Figures are ratios against a direct path measured in the same run wherever one exists.

import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import type { Benchmark, BenchResult } from './types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const prefix = process.env.BENCH ?? process.argv[2] ?? '';

async function main(): Promise<void> {
  const files = readdirSync(here).filter((f) => f.endsWith('.bench.js')).sort();
  const benches: Benchmark[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(path.join(here, f)).href)) as { benchmarks?: Benchmark[] };
    for (const b of mod.benchmarks ?? []) if (b.name.startsWith(prefix)) benches.push(b);
  }
  if (benches.length === 0) {
    process.stderr.write(`bench: no benchmark name starts with '${prefix}'\n`);
    process.exitCode = 2;
    return;
  }
  const results: BenchResult[] = [];
  for (const b of benches) {
    process.stderr.write(`bench: running ${b.name}…\n`);
    try {
      results.push(...(await b.run()));
    } catch (err) {
      process.stderr.write(`bench: ${b.name} failed: ${(err as Error).stack ?? err}\n`);
      process.exitCode = 1;
    }
  }
  printTable(results);
  for (const r of results) {
    const line: Record<string, unknown> = { bench: r.bench, value: round(r.value), unit: r.unit };
    if (r.direct !== undefined) line.direct = round(r.direct);
    if (r.ratio !== undefined) line.ratio = round(r.ratio);
    if (r.note) line.note = r.note;
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
}

function round(n: number): number {
  return Math.abs(n) >= 100 ? Math.round(n * 10) / 10 : Math.round(n * 1000) / 1000;
}

function printTable(rs: BenchResult[]): void {
  const rows = rs.map((r) => [r.bench, String(round(r.value)), r.unit, r.direct === undefined ? '' : String(round(r.direct)), r.ratio === undefined ? '' : `${round(r.ratio)}x`, r.note ?? '']);
  const head = ['benchmark', 'value', 'unit', 'direct', 'ratio', 'note'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd();
  process.stdout.write(`${fmt(head)}\n${w.map((n) => '-'.repeat(n)).join('  ')}\n${rows.map(fmt).join('\n')}\n\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
