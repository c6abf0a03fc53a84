// Masking throughput: MB per CPU-second of the streaming maskers over 64 KiB
// chunks, beside a direct path measured in the same run on the same bytes:
// a plain Buffer copy for text (what a proxy does anyway to forward bytes),
// JSON.parse + JSON.stringify per value for JSON (what a naive masker would do).

import type { Benchmark, BenchResult } from './types.js';
import { createJsonMasker, createTextMasker, maskInPlace } from '../core/mask/index.js';
import { luhnComplete } from '../test/support/cards.js';

const CHUNK = 64 * 1024;
const SIZE = 16 * 1024 * 1024;

// Deterministic pseudo-random data, so runs compare.
let seed = 42;
function rnd(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return (seed >>> 12) % n; // the low bits of this LCG cycle; use the high ones
}

const WORDS = ['the', 'agent', 'read', 'pod', 'payments', 'GET', '/api/v1/namespaces', 'status', 'ok', 'latency', 'ms', 'user', 'id', 'order', 'shipped', 'error', 'retry', 'connection', 'select', 'from', 'where', 'é', 'ü'];


function pan(): string {
  let body = ['4', '51', '2221', '37', '6011'][rnd(5)];
  const len = body === '37' ? 15 : 16;
  while (body.length < len - 1) body += String(rnd(10));
  const p = luhnComplete(body);
  return rnd(2) === 0 ? p : p.replace(/(\d{4})(?=\d)/g, '$1 ');
}

/**
 * Text without PANs, shaped like what a sidecar masks: access-log lines (timestamps,
 * status codes, sizes, durations, ids) mixed with prose-like messages.
 */
export function cleanText(): Buffer {
  const parts: string[] = [];
  let n = 0;
  const levels = ['INFO', 'WARN', 'DEBUG'];
  const verbs = ['GET', 'LIST', 'WATCH', 'PATCH'];
  const res = ['pods', 'configmaps', 'secrets', 'deployments'];
  while (n < SIZE) {
    let line: string;
    if (rnd(3) > 0) {
      const ts = `2026-11-23T12:${10 + rnd(50)}:${10 + rnd(50)}.${100 + rnd(900)}Z`;
      line = `${ts} ${levels[rnd(3)]} sidecar ${verbs[rnd(4)]} /api/v1/namespaces/payments/${res[rnd(4)]}/agent-${rnd(100000).toString(16)} ${[200, 201, 403, 404][rnd(4)]} ${rnd(50000)} bytes in ${rnd(900)}ms user=system:serviceaccount:payments:agent rv=${rnd(10000000)}`;
    } else {
      const words: string[] = [];
      for (let k = 0; k < 12; k++) words.push(rnd(8) === 0 ? String(rnd(1000)) : WORDS[rnd(WORDS.length)]);
      line = words.join(' ');
    }
    parts.push(line, '\n');
    n += line.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, SIZE);
}

/** Text with a PAN about every 60 bytes. */
export function denseText(): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < SIZE) {
    const s = rnd(3) === 0 ? pan() : WORDS[rnd(WORDS.length)];
    parts.push(s, ' ');
    n += s.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, SIZE);
}

/** NDJSON of Kubernetes-like objects, some strings and numbers holding PANs, some card fields. */
export function jsonLines(): Buffer {
  const lines: string[] = [];
  let n = 0;
  let i = 0;
  while (n < SIZE) {
    const obj = {
      type: 'MODIFIED',
      object: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `payments-${i}`, namespace: 'payments', resourceVersion: String(100000 + i), labels: { app: 'checkout', tier: 'backend' } },
        data: {
          note: rnd(4) === 0 ? `customer paid with ${pan()} yesterday` : 'customer paid by invoice, order 12345 shipped',
          amount: rnd(100000) / 100,
          card: rnd(8) === 0 ? Number(luhnComplete(`411111111111111`)) : null,
          cvv: rnd(8) === 0 ? String(100 + rnd(900)) : undefined,
          items: [1, 2, 3].map((k) => ({ sku: `SKU-${k}-${rnd(1000)}`, qty: rnd(10), price: rnd(10000) / 100 })),
        },
      },
    };
    const line = JSON.stringify(obj);
    lines.push(line);
    n += line.length + 1;
    i++;
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

/**
 * A Kubernetes LIST response as the API server writes it (compact JSON): 500
 * ConfigMaps with uids, timestamps, managedFields and YAML data, a third holding a
 * grouped PAN — the body the Kubernetes proxy masks per `kube-list-mask` request.
 */
export function listBody(): Buffer {
  const items: unknown[] = [];
  for (let i = 0; i < 500; i++) {
    const hex = (n: number) => Array.from({ length: n }, () => '0123456789abcdef'[rnd(16)]).join('');
    const data: Record<string, string> = { 'config.yaml': `replicas: ${i % 7}\nendpoint: https://svc-${i}.bench.svc:8443\nretry: 3\n`, owner: `team-${i % 13}` };
    if (i % 3 === 0) data.card = `customer ${i} card ${pan()} exp 12/29`;
    items.push({
      metadata: {
        name: `cm-${String(i).padStart(4, '0')}`, namespace: 'bench', uid: `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`, resourceVersion: String(100000 + i),
        creationTimestamp: '2026-11-23T11:06:59Z', labels: { tier: 'bench' },
        managedFields: [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', time: '2026-11-23T11:06:59Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:data': { '.': {}, 'f:config.yaml': {}, 'f:owner': {} } } }],
      },
      data,
    });
  }
  return Buffer.from(JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '200000' }, items }));
}

/** COPY … TO STDOUT rows of a PAN-dense table (id, PAN, name, date): one PAN per row. */
export function copyRows(): Buffer[] {
  const rows: Buffer[] = [];
  for (let i = 0; i < 20000; i++) {
    let p = pan().replace(/ /g, '');
    if (rnd(4) === 0) p = `${p.slice(0, 4)} ${p.slice(4, 8)} ${p.slice(8, 12)} ${p.slice(12)}`;
    rows.push(Buffer.from(`${100000 + i}\t${p}\tcustomer ${rnd(100000)}\t2026-11-${10 + rnd(18)}\n`));
  }
  return rows;
}

function chunks(b: Buffer, size = CHUNK): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}

/**
 * MB/s of fn over `bytes`, best of three after a warm-up. Timed by the process's
 * CPU time, not the wall clock: the loop is synchronous and single-threaded, so on
 * an idle machine the two agree, and on a shared one CPU time is far less noisy.
 */
function throughput(bytes: number, fn: () => void): number {
  fn();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = process.cpuUsage();
    fn();
    const d = process.cpuUsage(t0);
    best = Math.min(best, (d.user + d.system) / 1e6);
  }
  return bytes / 1e6 / best;
}

function rssMB(): number {
  return Math.round(process.memoryUsage().rss / 1e5) / 10;
}

function textBench(name: string, data: () => Buffer): Benchmark {
  return {
    name,
    async run(): Promise<BenchResult[]> {
      const buf = data();
      const cs = chunks(buf);
      let sink = 0;
      const value = throughput(buf.length, () => {
        const m = createTextMasker();
        for (const c of cs) sink += m.write(c).length;
        sink += m.end().length;
      });
      const direct = throughput(buf.length, () => {
        for (const c of cs) sink += Buffer.from(c).length;
      });
      if (sink === 0) throw new Error('no output');
      return [{ bench: name, value, unit: 'MB/s', direct, ratio: value / direct, note: `direct = Buffer copy; ${(buf.length / 1e6).toFixed(1)} MB in 64 KiB chunks; rss ${rssMB()} MB` }];
    },
  };
}

/** CPU seconds per call of fn, best of three runs of `n` calls after a warm-up run. */
function perCall(n: number, fn: () => void): number {
  const loop = () => {
    for (let k = 0; k < n; k++) fn();
  };
  return 1 / throughput(n * 1e6, loop);
}

export const benchmarks: Benchmark[] = [
  textBench('mask-text-clean', cleanText),
  textBench('mask-text-dense', denseText),
  {
    name: 'mask-json',
    async run(): Promise<BenchResult[]> {
      const buf = jsonLines();
      const cs = chunks(buf);
      const lines = buf.toString().split('\n').filter((l) => l.length > 0);
      let sink = 0;
      const value = throughput(buf.length, () => {
        const m = createJsonMasker();
        for (const c of cs) sink += m.write(c).length;
        sink += m.end().length;
      });
      const direct = throughput(buf.length, () => {
        for (const l of lines) sink += JSON.stringify(JSON.parse(l)).length;
      });
      if (sink === 0) throw new Error('no output');
      return [{ bench: 'mask-json', value, unit: 'MB/s', direct, ratio: value / direct, note: `direct = JSON.parse+stringify per line; ${(buf.length / 1e6).toFixed(1)} MB NDJSON; rss ${rssMB()} MB` }];
    },
  },
  {
    // What the Kubernetes proxy does per LIST response: a new masker, 16 KiB reads.
    name: 'mask-json-list',
    async run(): Promise<BenchResult[]> {
      const body = listBody();
      const cs = chunks(body, 16 * 1024);
      const reps = 40;
      let sink = 0;
      const value = throughput(body.length * reps, () => {
        for (let r = 0; r < reps; r++) {
          const m = createJsonMasker();
          for (const c of cs) sink += m.write(c).length;
          sink += m.end().length;
        }
      });
      const text = body.toString();
      const direct = throughput(body.length * reps, () => {
        for (let r = 0; r < reps; r++) sink += JSON.stringify(JSON.parse(text)).length;
      });
      if (sink === 0) throw new Error('no output');
      return [{ bench: 'mask-json-list', value, unit: 'MB/s', direct, ratio: value / direct, note: `direct = JSON.parse+stringify; 500-ConfigMap LIST body (${(body.length / 1024).toFixed(0)} KiB) in 16 KiB reads, a new masker per body; target ≥ 100; rss ${rssMB()} MB` }];
    },
  },
  {
    // The per-response fixed cost: creating a masker and masking a small object.
    name: 'mask-json-create',
    async run(): Promise<BenchResult[]> {
      const small = Buffer.from('{"kind":"Status","apiVersion":"v1","status":"Success","code":200}');
      let sink = 0;
      const create = perCall(200000, () => {
        sink += createJsonMasker().pansMasked + 1;
      });
      const small1 = perCall(100000, () => {
        const m = createJsonMasker();
        sink += m.write(small).length + m.end().length;
      });
      const reused = createJsonMasker();
      const small2 = perCall(100000, () => {
        reused.reset();
        sink += reused.write(small).length + reused.end().length;
      });
      if (sink === 0) throw new Error('no output');
      return [
        { bench: 'mask-json-create', value: create * 1e6, unit: 'µs/masker', note: 'createJsonMasker() alone, default options' },
        { bench: 'mask-json-small', value: small1 * 1e6, unit: 'µs/body', note: `new masker + ${small.length}-byte object + end()` },
        { bench: 'mask-json-small-reset', value: small2 * 1e6, unit: 'µs/body', direct: small1 * 1e6, ratio: small2 / small1, note: 'the same with one masker reset() per body; direct = a new masker per body' },
      ];
    },
  },
  {
    // The PostgreSQL proxy masks COPY rows and DataRow values in place.
    name: 'mask-inplace-copy',
    async run(): Promise<BenchResult[]> {
      const rows = copyRows();
      const bytes = rows.reduce((n, r) => n + r.length, 0);
      const fresh = rows.map((r) => Buffer.from(r));
      let sink = 0;
      // Each pass restores the rows first (a masked row has no PAN left to find); the
      // direct path is that copy alone, what forwarding the rows costs at least.
      const value = throughput(bytes, () => {
        for (let k = 0; k < rows.length; k++) {
          fresh[k].copy(rows[k]);
          sink += maskInPlace(rows[k], 0, rows[k].length);
        }
      });
      const direct = throughput(bytes, () => {
        for (let k = 0; k < rows.length; k++) sink += fresh[k].copy(rows[k]);
      });
      if (sink === 0) throw new Error('no output');
      const nsPerRow = (1e3 * bytes) / 1e6 / value / rows.length * 1e6;
      return [{ bench: 'mask-inplace-copy', value, unit: 'MB/s', direct, ratio: value / direct, note: `maskInPlace per COPY row, one PAN each (${rows.length} rows, ${(bytes / 1e6).toFixed(1)} MB): ${nsPerRow.toFixed(0)} ns/row; direct = copying the row` }];
    },
  },
];
