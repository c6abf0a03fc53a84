// The PostgreSQL proxy against the direct path and PgBouncer, on one throw-away server in
// one run (issue: the sidecar's PostgreSQL proxy, "Benchmark").
//
//   pgbench-{prepared,simple}-pinned   pgbench -S -n, 8 clients: direct, through PgBouncer
//   pgbench-{prepared,simple}          (session mode) and through the sidecar with policy and
//                                      masking on. Pinned: server and pgbench on core 0, the
//                                      proxy alone on core 1 (a sidecar with its own CPU);
//                                      unpinned: everything shares every core.
//                                      Each gives TPS with direct/ratio, a `-pgbouncer` line
//                                      (ratio to PgBouncer) and a `-cpu` line (the sidecar's
//                                      CPU time per transaction, /proc/PID/stat utime+stime).
//   pg-added-latency                   pgbench -c1 -S --log (per-transaction latency) direct
//                                      and through the sidecar, pinned: added p50 (and p99).
//   pg-copy-out-mask                   psql `COPY cards TO STDOUT` of a table whose every row
//                                      holds a PAN, masked by the sidecar, MB/s vs direct.
//   sidecar-rss                        the sidecar's RSS after 100 000 distinct statements.
//
// Environment: BENCH_SECONDS (pgbench -T, default 30), BENCH_PG_SCALE (pgbench -i -s,
// default 1), BENCH_COPY_ROWS (default 400000), BENCH_RSS_STATEMENTS (default 100000),
// BENCH_SIDECAR_PROF=DIR (write a V8 CPU profile of the sidecar there), BENCH_SIDECAR_NODE_ARGS
// (more node flags for the sidecar, space-separated, e.g. `--max-semi-space-size=16`).
// Pinning needs `taskset` and permission to re-pin the server's processes (root, as in CI).
// All the selected benchmarks share one environment, started by the first and torn down
// after the last (the cluster's own exit hook covers a crash).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import pg from 'pg';
import { startCluster, type PgCluster } from '../test/support/postgres.js';
import { freePort } from '../test/support/ports.js';
import type { Benchmark, BenchResult } from './types.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../cli/main.js');

const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const SCALE = Number(process.env.BENCH_PG_SCALE ?? 1);
const COPY_ROWS = Number(process.env.BENCH_COPY_ROWS ?? 400_000);
const RSS_STATEMENTS = Number(process.env.BENCH_RSS_STATEMENTS ?? 100_000);
const CLIENTS = 8;
const CLK_TCK = 100; // Linux USER_HZ: /proc/PID/stat counts in 1/100 s on every mainstream architecture.
const DB = 'bench';
const USER = 'bench';

type Target = 'direct' | 'pgbouncer' | 'sidecar';
type Mode = 'prepared' | 'simple';

interface PgbenchOutcome {
  tps: number;
  transactions: number;
}

// ---------------------------------------------------------------------------------------
// The shared environment: cluster, PgBouncer, sidecar.

class Environment {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-pgbench-'));
  cluster!: PgCluster;
  password = crypto.randomBytes(12).toString('hex');
  sidecarPort = 0;
  pgbouncerPort = 0;
  metricsPort = 0;
  sidecar?: ChildProcess;
  pgbouncer?: ChildProcess;
  copyBytes = 0;
  private killOnExit = () => {
    this.sidecar?.kill('SIGKILL');
    this.pgbouncer?.kill('SIGKILL');
  };

  async start(): Promise<void> {
    process.on('exit', this.killOnExit);
    fs.chmodSync(this.dir, 0o755);
    this.cluster = await startCluster({ settings: { max_connections: '100', shared_buffers: "'128MB'" } });
    await this.cluster.createUser(USER, this.password);
    await this.cluster.createDatabase(DB, USER);
    await run('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', this.cluster.host, '-p', String(this.cluster.port), '-U', USER, DB], {
      env: this.env('direct'),
    });
    await this.loadCards();
    await this.startPgbouncer();
    await this.startSidecar();
  }

  async stop(): Promise<void> {
    for (const c of [this.sidecar, this.pgbouncer]) {
      if (!c || c.exitCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (c.exitCode === null) c.kill('SIGKILL');
    }
    await this.cluster?.stop();
    process.off('exit', this.killOnExit);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  port(t: Target): number {
    return t === 'direct' ? this.cluster.port : t === 'pgbouncer' ? this.pgbouncerPort : this.sidecarPort;
  }

  env(t: Target): NodeJS.ProcessEnv {
    // Only the direct path needs the real password: PgBouncer holds it in its ini, the
    // sidecar in its password file, as in production.
    const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(this.port(t)), PGUSER: USER, PGDATABASE: DB, PGSSLMODE: 'disable' };
    delete env.PGPASSWORD;
    delete env.PGSERVICE;
    if (t === 'direct') env.PGPASSWORD = this.password;
    return env;
  }

  /** Server processes: the postmaster and its children (backends fork from it and inherit its CPU mask). */
  serverPids(): number[] {
    const postmaster = Number(fs.readFileSync(path.join(this.cluster.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return [postmaster, ...childrenOf(postmaster)];
  }

  proxyPids(): number[] {
    return [this.sidecar?.pid, this.pgbouncer?.pid].filter((p): p is number => typeof p === 'number');
  }

  async pin(pinned: boolean): Promise<void> {
    const all = `0-${os.availableParallelism() - 1}`;
    await setAffinity(this.serverPids(), pinned ? '0' : all);
    await setAffinity(this.proxyPids(), pinned ? '1' : all);
  }

  private async loadCards(): Promise<void> {
    const file = path.join(this.dir, 'cards.csv');
    const out = fs.createWriteStream(file);
    const chunk: string[] = [];
    for (let i = 1; i <= COPY_ROWS; i++) {
      chunk.push(`${i},${visaPan(i)},Card Holder ${i},${(i % 100000) / 100}\n`);
      if (chunk.length === 10_000) {
        out.write(chunk.join(''));
        chunk.length = 0;
      }
    }
    out.end(chunk.join(''));
    await new Promise<void>((r) => out.once('finish', () => r()));
    const psql = ['-X', '-q', '-v', 'ON_ERROR_STOP=1'];
    await run('psql', [...psql, '-c', 'CREATE TABLE cards (id int PRIMARY KEY, pan text NOT NULL, holder text, amount numeric(10,2))'], { env: this.env('direct') });
    await run('psql', [...psql, '-c', `\\copy cards FROM '${file}' WITH (FORMAT csv)`], { env: this.env('direct') });
    await run('psql', [...psql, '-c', 'VACUUM ANALYZE cards'], { env: this.env('direct') });
    fs.rmSync(file);
  }

  private async startPgbouncer(): Promise<void> {
    const { uid, gid } = postgresUser();
    const dir = path.join(this.dir, 'pgbouncer');
    fs.mkdirSync(dir, { mode: 0o700 });
    this.pgbouncerPort = await freePort();
    const ini = path.join(dir, 'pgbouncer.ini');
    fs.writeFileSync(
      ini,
      [
        '[databases]',
        `${DB} = host=127.0.0.1 port=${this.cluster.port} dbname=${DB} user=${USER} password=${this.password}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${this.pgbouncerPort}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${path.join(dir, 'userlist.txt')}`,
        'pool_mode = session',
        'max_client_conn = 200',
        'default_pool_size = 20',
        'ignore_startup_parameters = extra_float_digits,options',
        `logfile = ${path.join(dir, 'pgbouncer.log')}`,
        'log_connections = 0',
        'log_disconnections = 0',
        '',
      ].join('\n'),
    );
    fs.writeFileSync(path.join(dir, 'userlist.txt'), `"${USER}" "${this.password}"\n`);
    for (const f of [dir, ini, path.join(dir, 'userlist.txt')]) fs.chownSync(f, uid, gid);
    // PgBouncer refuses to run as root: run it as the cluster's `postgres` user.
    this.pgbouncer = spawn(which('pgbouncer'), [ini], { uid, gid, stdio: ['ignore', 'ignore', fs.openSync(path.join(this.dir, 'pgbouncer.stderr'), 'w')] });
    await waitReady('pgbouncer', this.pgbouncer, () => tryQuery(this.env('pgbouncer')), () => readTail(path.join(this.dir, 'pgbouncer.stderr')));
  }

  private async startSidecar(): Promise<void> {
    const dir = path.join(this.dir, 'sidecar');
    fs.mkdirSync(dir);
    this.sidecarPort = await freePort();
    const health = await freePort();
    const metrics = (this.metricsPort = await freePort());
    fs.writeFileSync(path.join(dir, 'password'), this.password + '\n', { mode: 0o600 });
    fs.writeFileSync(
      path.join(dir, 'policy.yaml'),
      [
        'apiVersion: agentgate.dev/v1',
        'kind: Policy',
        'metadata: { name: bench }',
        'spec:',
        '  default: deny',
        '  masking: { pan: last4 }',
        '  rules:',
        '    - name: bench-reads',
        '      subjects: ["system:serviceaccount:bench:*"]',
        `      postgres: { connections: [${DB}], statements: [select, copy-to], tables: ["public.*"] }`,
        '      action: allow',
        '    - name: no-destruction',
        '      postgres: { statements: [drop, truncate, delete-without-where, update-without-where] }',
        '      action: deny',
        '',
      ].join('\n'),
    );
    const config = path.join(dir, 'sidecar.yaml');
    fs.writeFileSync(
      config,
      [
        'postgres:',
        `  - name: ${DB}`,
        `    listen: 127.0.0.1:${this.sidecarPort}`,
        '    upstream:',
        '      host: 127.0.0.1',
        `      port: ${this.cluster.port}`,
        `      database: ${DB}`,
        `      user: ${USER}`,
        '      passwordFile: ./password',
        '      tls: { mode: disable }',
        'policy: { file: ./policy.yaml }',
        'audit: { file: ./audit.jsonl }',
        `health: { listen: 127.0.0.1:${health} }`,
        `metrics: { listen: 127.0.0.1:${metrics} }`,
        '',
      ].join('\n'),
    );
    const stderr = path.join(this.dir, 'sidecar.stderr');
    // BENCH_SIDECAR_PROF=DIR: a V8 CPU profile of the sidecar, written when it exits (where the time goes).
    const prof = process.env.BENCH_SIDECAR_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_SIDECAR_PROF)}`] : [];
    prof.push(...(process.env.BENCH_SIDECAR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean));
    this.sidecar = spawn(process.execPath, [...prof, MAIN, 'sidecar', '--config', config], {
      stdio: ['ignore', 'ignore', fs.openSync(stderr, 'w')],
      env: { ...process.env, AGENTGATE_POD_NAMESPACE: 'bench', AGENTGATE_POD_NAME: 'agent-0', AGENTGATE_SERVICE_ACCOUNT: 'agent', LOG_LEVEL: 'warn' },
    });
    await waitReady('sidecar', this.sidecar, () => httpOk(`http://127.0.0.1:${health}/healthz/ready`), () => readTail(stderr));
  }
}

// ---------------------------------------------------------------------------------------
// Measurements.

async function pgbench(env: Environment, t: Target, args: string[], pinned: boolean): Promise<PgbenchOutcome> {
  const argv = ['-n', '-S', ...args];
  const cmd = pinned ? 'taskset' : 'pgbench';
  const full = pinned ? ['-c', '0', 'pgbench', ...argv] : argv;
  let stdout: string;
  try {
    ({ stdout } = await run(cmd, full, { env: env.env(t), maxBuffer: 16 * 1024 * 1024 }));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`pgbench ${argv.join(' ')} against ${t} failed: ${e.stderr || e.message}\n${e.stdout ?? ''}`);
  }
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  const txns = /number of transactions actually processed: (\d+)/.exec(stdout);
  const failed = /number of failed transactions: (\d+)/.exec(stdout);
  if (!tps || !txns) throw new Error(`unexpected pgbench output against ${t}:\n${stdout}`);
  if (failed && Number(failed[1]) > 0) throw new Error(`pgbench against ${t}: ${failed[1]} failed transactions\n${stdout}`);
  return { tps: Number(tps[1]), transactions: Number(txns[1]) };
}

async function throughput(env: Environment, mode: Mode, pinned: boolean): Promise<BenchResult[]> {
  await env.pin(pinned);
  const args = ['-M', mode, '-c', String(CLIENTS), '-j', '1', '-T', String(SECONDS)];
  const direct = await pgbench(env, 'direct', args, pinned);
  const bouncerCpu0 = cpuSeconds(env.pgbouncer!.pid!);
  const bouncer = await pgbench(env, 'pgbouncer', args, pinned);
  const bouncerCpu = cpuSeconds(env.pgbouncer!.pid!) - bouncerCpu0;
  const sidecarCpu0 = cpuSeconds(env.sidecar!.pid!);
  const sidecarSys0 = cpuSeconds(env.sidecar!.pid!, 'system');
  const sidecar = await pgbench(env, 'sidecar', args, pinned);
  const sidecarCpu = cpuSeconds(env.sidecar!.pid!) - sidecarCpu0;
  const sidecarSys = cpuSeconds(env.sidecar!.pid!, 'system') - sidecarSys0;
  const name = `pgbench-${mode}${pinned ? '-pinned' : ''}`;
  const setup = pinned ? 'server+pgbench on core 0, proxy on core 1' : 'unpinned, all cores shared';
  const sidecarUs = (sidecarCpu * 1e6) / sidecar.transactions;
  const bouncerUs = (bouncerCpu * 1e6) / bouncer.transactions;
  return [
    { bench: name, value: sidecar.tps, unit: 'tps', direct: direct.tps, ratio: sidecar.tps / direct.tps, note: `sidecar; ${setup}; pgbench -S -M ${mode} -c ${CLIENTS} -T ${SECONDS}` },
    { bench: `${name}-pgbouncer`, value: sidecar.tps, unit: 'tps', direct: bouncer.tps, ratio: sidecar.tps / bouncer.tps, note: `direct = PgBouncer ${bouncer.tps.toFixed(0)} tps (${(bouncer.tps / direct.tps).toFixed(2)}x direct), session mode` },
    { bench: `${name}-cpu`, value: sidecarUs, unit: 'µs CPU/txn', direct: bouncerUs, ratio: sidecarUs / bouncerUs, note: `sidecar utime+stime per transaction (system ${((sidecarSys * 1e6) / sidecar.transactions).toFixed(1)} µs: socket and file syscalls); direct = PgBouncer's` },
  ];
}

async function latency(env: Environment): Promise<BenchResult[]> {
  await env.pin(true);
  const seconds = Math.max(2, Math.round(SECONDS / 3));
  const results: BenchResult[] = [];
  for (const mode of ['prepared', 'simple'] as Mode[]) {
    const lat: Record<'direct' | 'sidecar', number[]> = { direct: [], sidecar: [] };
    for (const t of ['direct', 'sidecar'] as const) {
      const prefix = path.join(env.dir, `lat-${mode}-${t}`);
      await pgbench(env, t, ['-M', mode, '-c', '1', '-j', '1', '-T', String(seconds), '-l', `--log-prefix=${prefix}`], true);
      lat[t] = readPgbenchLog(prefix);
    }
    const d = { p50: percentile(lat.direct, 0.5), p99: percentile(lat.direct, 0.99) };
    const s = { p50: percentile(lat.sidecar, 0.5), p99: percentile(lat.sidecar, 0.99) };
    const suffix = mode === 'prepared' ? '' : '-simple';
    const how = `pgbench -S -M ${mode} -c1 -T ${seconds} --log, pinned; direct p50 ${d.p50} µs p99 ${d.p99} µs, sidecar p50 ${s.p50} µs p99 ${s.p99} µs`;
    results.push({ bench: `pg-added-latency${suffix}`, value: s.p50 - d.p50, unit: 'µs added p50', direct: d.p50, ratio: s.p50 / d.p50, note: how });
    results.push({ bench: `pg-added-latency${suffix}-p99`, value: s.p99 - d.p99, unit: 'µs added p99', direct: d.p99, ratio: s.p99 / d.p99 });
  }
  return results;
}

async function copyOut(env: Environment): Promise<BenchResult[]> {
  await env.pin(true);
  // One counted run each way first: the masked output must be the same length (masking keeps
  // framing) and hold no clear PAN.
  const direct = await psqlCopy(env, 'direct', true);
  const masked = await psqlCopy(env, 'sidecar', true);
  if (masked.bytes !== direct.bytes) throw new Error(`masked COPY output is ${masked.bytes} bytes, direct ${direct.bytes}`);
  if (!masked.sample.includes('************')) throw new Error(`COPY through the sidecar is not masked: ${masked.sample.slice(0, 200)}`);
  const times: Record<'direct' | 'sidecar', number[]> = { direct: [], sidecar: [] };
  for (let i = 0; i < 3; i++) {
    times.direct.push((await psqlCopy(env, 'direct', false)).seconds);
    times.sidecar.push((await psqlCopy(env, 'sidecar', false)).seconds);
  }
  const mbps = (s: number) => direct.bytes / 1e6 / s;
  const d = mbps(median(times.direct));
  const s = mbps(median(times.sidecar));
  return [
    {
      bench: 'pg-copy-out-mask',
      value: s,
      unit: 'MB/s',
      direct: d,
      ratio: s / d,
      note: `psql COPY cards TO STDOUT, ${COPY_ROWS} rows with a PAN each (${(direct.bytes / 1e6).toFixed(1)} MB), median of 3, pinned`,
    },
  ];
}

async function rss(env: Environment): Promise<BenchResult[]> {
  await env.pin(false);
  const pid = env.sidecar!.pid!;
  const before = rssMiB(pid);
  const script = path.join(env.dir, 'distinct.sql');
  // Every statement text differs, so every one is a cache miss and a fresh parse.
  fs.writeFileSync(script, '\\set n random(1, 2000000000)\nSELECT :n AS n, \'distinct statement\' AS s;\n');
  const clients = 4;
  const perClient = Math.ceil(RSS_STATEMENTS / clients);
  let stdout: string;
  try {
    ({ stdout } = await run('pgbench', ['-n', '-M', 'simple', '-f', script, '-c', String(clients), '-j', '1', '-t', String(perClient)], { env: env.env('sidecar'), maxBuffer: 16 * 1024 * 1024 }));
  } catch (err) {
    throw new Error(`pgbench (distinct statements) through the sidecar failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
  const done = /number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? '?';
  const after = rssMiB(pid);
  const m = await sidecarMemory(env.metricsPort);
  return [
    {
      bench: 'sidecar-rss',
      value: after,
      unit: 'MiB',
      note: `after ${done} distinct statements (pgbench -M simple, ${clients} clients) and the runs before; ${before.toFixed(1)} MiB before them; ${m}`,
    },
  ];
}

// ---------------------------------------------------------------------------------------
// Lifecycle: the selected benchmarks share one environment.

const NAMES = ['pgbench-prepared-pinned', 'pgbench-simple-pinned', 'pgbench-prepared', 'pgbench-simple', 'pg-added-latency', 'pg-copy-out-mask', 'sidecar-rss'] as const;
// bench/run.ts selects by this same prefix.
const prefix = process.env.BENCH ?? process.argv[2] ?? '';
const pending = new Set<string>(NAMES.filter((n) => n.startsWith(prefix)));
let shared: Promise<Environment> | undefined;

async function withEnvironment(name: string, fn: (env: Environment) => Promise<BenchResult[]>): Promise<BenchResult[]> {
  shared ??= (async () => {
    const env = new Environment();
    try {
      await env.start();
    } catch (err) {
      await env.stop().catch(() => undefined);
      throw err;
    }
    return env;
  })();
  try {
    return await fn(await shared);
  } finally {
    pending.delete(name);
    if (pending.size === 0 && shared) {
      const env = await shared.catch(() => undefined);
      await env?.stop();
    }
  }
}

export const benchmarks: Benchmark[] = [
  { name: 'pgbench-prepared-pinned', run: () => withEnvironment('pgbench-prepared-pinned', (e) => throughput(e, 'prepared', true)) },
  { name: 'pgbench-simple-pinned', run: () => withEnvironment('pgbench-simple-pinned', (e) => throughput(e, 'simple', true)) },
  { name: 'pgbench-prepared', run: () => withEnvironment('pgbench-prepared', (e) => throughput(e, 'prepared', false)) },
  { name: 'pgbench-simple', run: () => withEnvironment('pgbench-simple', (e) => throughput(e, 'simple', false)) },
  { name: 'pg-added-latency', run: () => withEnvironment('pg-added-latency', latency) },
  { name: 'pg-copy-out-mask', run: () => withEnvironment('pg-copy-out-mask', copyOut) },
  { name: 'sidecar-rss', run: () => withEnvironment('sidecar-rss', rss) },
];

// ---------------------------------------------------------------------------------------
// Helpers.

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A 16-digit Visa number that passes Luhn, different for every i. */
function visaPan(i: number): string {
  const body = `4${String(i).padStart(14, '0')}`;
  let sum = 0;
  for (let k = 0; k < body.length; k++) {
    let d = body.charCodeAt(body.length - 1 - k) - 48;
    if (k % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

async function setAffinity(pids: number[], cpus: string): Promise<void> {
  for (const pid of pids) {
    try {
      await run('taskset', ['-a', '-p', '-c', cpus, String(pid)]);
    } catch (err) {
      if (fs.existsSync(`/proc/${pid}`)) throw new Error(`taskset -p -c ${cpus} ${pid} failed (needs taskset and permission): ${(err as Error).message}`);
    }
  }
}

/** User + system CPU seconds of a process (all its threads). */
function cpuSeconds(pid: number, which: 'all' | 'system' = 'all'): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ", field 3 (state) is f[0]; utime and stime are fields 14 and 15.
  return (which === 'system' ? Number(f[12]) : Number(f[11]) + Number(f[12])) / CLK_TCK;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** Where the RSS is, from the sidecar's own default process metrics (prom-client). */
async function sidecarMemory(port: number): Promise<string> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const get = (name: string) => {
      const v = new RegExp(`^\\w*${name} ([\\d.e+]+)$`, 'm').exec(text)?.[1];
      return v === undefined ? '?' : (Number(v) / 1048576).toFixed(1);
    };
    return `V8 heap used ${get('nodejs_heap_size_used_bytes')} MiB of ${get('nodejs_heap_size_total_bytes')}, external ${get('nodejs_external_memory_bytes')} MiB`;
  } catch {
    return 'heap figures unavailable (metrics endpoint)';
  }
}

function postgresUser(): { uid: number; gid: number } {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user to run PgBouncer as');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function which(cmd: string): string {
  for (const d of ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin']) if (fs.existsSync(path.join(d, cmd))) return path.join(d, cmd);
  throw new Error(`${cmd} not found (Debian package pgbouncer; see test/apt-packages.txt)`);
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

async function waitReady(what: string, child: ChildProcess, probe: () => Promise<boolean>, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${log()}`);
    if (await probe()) return;
    await sleep(100);
  }
  throw new Error(`${what} not ready after 30 s:\n${log()}`);
}

async function tryQuery(env: NodeJS.ProcessEnv): Promise<boolean> {
  const c = new pg.Client({ host: env.PGHOST, port: Number(env.PGPORT), user: env.PGUSER, database: env.PGDATABASE, password: env.PGPASSWORD || undefined });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url);
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

function readPgbenchLog(prefix: string): number[] {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix) + '.';
  const out: number[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(base)) continue;
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      // client_id transaction_no time(µs) script_no time_epoch time_us
      const cols = line.split(' ');
      if (cols.length >= 3) out.push(Number(cols[2]));
    }
  }
  if (out.length === 0) throw new Error(`no pgbench log at ${prefix}.*`);
  return out;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

function median(xs: number[]): number {
  return percentile(xs, 0.5);
}

async function psqlCopy(env: Environment, t: 'direct' | 'sidecar', count: boolean): Promise<{ seconds: number; bytes: number; sample: string }> {
  const args = ['-c', '0', 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', 'COPY cards TO STDOUT'];
  const t0 = process.hrtime.bigint();
  const child = spawn('taskset', args, { env: env.env(t), stdio: ['ignore', count ? 'pipe' : 'ignore', 'pipe'] });
  let bytes = 0;
  let sample = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    if (sample.length < 4096) sample += c.toString('utf8', 0, Math.min(c.length, 4096));
    bytes += c.length;
  });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (code !== 0) throw new Error(`psql COPY against ${t} exited ${code}: ${stderr}`);
  return { seconds, bytes, sample };
}
