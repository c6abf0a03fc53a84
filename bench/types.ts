// What a benchmark module exports: `export const benchmarks: Benchmark[]`.

export interface BenchResult {
  /** The figure's name, e.g. `mask-text-clean` or `pgbench-prepared-pinned`. */
  bench: string;
  value: number;
  unit: string;
  /** The same figure on the direct path, measured in the same run. */
  direct?: number;
  /** value / direct (or the ratio the benchmark defines, e.g. proxy TPS / direct TPS). */
  ratio?: number;
  note?: string;
}

export interface Benchmark {
  /** Prefix-matched by `make bench BENCH=...`. */
  name: string;
  run(): Promise<BenchResult[]>;
}
