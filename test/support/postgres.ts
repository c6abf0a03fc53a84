// Throw-away PostgreSQL clusters for tests and benchmarks: initdb as the `postgres`
// user (initdb refuses root) in a temp dir, on a free loopback port, SCRAM-SHA-256
// for TCP, trust only on the cluster's private Unix socket (used by `sql()` to set
// things up), optional TLS with a freshly generated CA and server certificate.
//
//   const pg = await startCluster({ tls: true });
//   await pg.createUser('agent_ro', 'secret');
//   await pg.createDatabase('payments', 'agent_ro');
//   await pg.sql('create table cards(pan text)', 'payments');
//   pg.url('agent_ro', 'secret', 'payments')  // postgres://agent_ro:secret@127.0.0.1:PORT/payments
//   await pg.stop();                           // stops the server and deletes the directory
//
// Clusters left running when the process exits (a crashed test) are stopped by an
// exit hook, so no postmaster outlives the test run.

import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

const run = promisify(execFile);
export const PG_BIN = process.env.AGENTGATE_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface ClusterOptions {
  /** Generate a CA and a server certificate (CN/SAN localhost, 127.0.0.1) and turn `ssl` on. */
  tls?: boolean;
  /** With `tls`: accept TCP connections only over TLS (`hostssl` lines). */
  requireTls?: boolean;
  /**
   * pg_hba.conf lines placed before the defaults, e.g.
   * `host all md5user 127.0.0.1/32 md5` or `host all clear 127.0.0.1/32 password`.
   */
  hba?: string[];
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** Superuser password (SCRAM). Default: random. */
  superPassword?: string;
}

export interface PgCluster {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** Unix socket directory (trust for the `postgres` superuser). */
  readonly socketDir: string;
  readonly superuser: string;
  readonly superPassword: string;
  /** CA certificate file that signed the server certificate (with `tls`). */
  readonly caFile?: string;
  /** postgres:// URL over TCP. Defaults: superuser, its password, database `postgres`. */
  url(user?: string, password?: string, database?: string): string;
  /** Runs SQL as the superuser over the Unix socket; returns the rows of the last statement. */
  sql(text: string, database?: string): Promise<Record<string, unknown>[]>;
  /** CREATE ROLE … LOGIN PASSWORD; `encryption: 'md5'` stores an MD5 hash (for MD5 auth tests). */
  createUser(name: string, password: string, opts?: { superuser?: boolean; encryption?: 'scram-sha-256' | 'md5' }): Promise<void>;
  createDatabase(name: string, owner?: string): Promise<void>;
  /** Environment for psql/pgbench against this cluster over TCP. */
  env(user?: string, password?: string, database?: string): NodeJS.ProcessEnv;
  /** Stops the server (fast) without deleting the directory; `start()` brings it back on the same port. */
  halt(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

const live = new Map<string, string>(); // data dir → temp root
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const [dir, root] of live) {
      try {
        execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, 'stop', '-D', dir, '-m', 'immediate', '-s'], { stdio: 'ignore' });
      } catch {
        /* already down */
      }
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
}

function asPostgres(cmd: string, args: string[], opts: { cwd?: string } = {}) {
  const isRoot = process.getuid?.() === 0;
  return isRoot ? run('runuser', ['-u', 'postgres', '--', cmd, ...args], opts) : run(cmd, args, opts);
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** A self-signed CA and a server certificate for localhost / 127.0.0.1, written into `dir`. */
export async function makeServerCertificate(dir: string, commonName = 'localhost'): Promise<{ caFile: string; certFile: string; keyFile: string; caKeyFile: string }> {
  const caKeyFile = path.join(dir, 'ca.key');
  const caFile = path.join(dir, 'ca.crt');
  const keyFile = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const certFile = path.join(dir, 'server.crt');
  const ext = path.join(dir, 'server.ext');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKeyFile, '-out', caFile, '-days', '2', '-subj', '/CN=agentgate test CA']);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${commonName}`]);
  fs.writeFileSync(ext, `subjectAltName=DNS:${commonName},DNS:localhost,IP:127.0.0.1\n`);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKeyFile, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext]);
  fs.chmodSync(keyFile, 0o600);
  return { caFile, certFile, keyFile, caKeyFile };
}

export async function startCluster(opts: ClusterOptions = {}): Promise<PgCluster> {
  hookExit();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'agentgate-pg-'));
  const dir = path.join(root, 'data');
  const superPassword = opts.superPassword ?? `su-${Math.random().toString(36).slice(2)}`;
  const isRoot = process.getuid?.() === 0;
  const pgUid = isRoot ? Number(execFileSync('id', ['-u', 'postgres']).toString().trim()) : process.getuid!();
  const pgGid = isRoot ? Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) : process.getgid!();
  fs.chmodSync(root, 0o755);
  fs.chownSync(root, pgUid, pgGid);
  const pwfile = path.join(root, 'pwfile');
  fs.writeFileSync(pwfile, superPassword + '\n', { mode: 0o600 });
  fs.chownSync(pwfile, pgUid, pgGid);
  live.set(dir, root);

  await asPostgres(`${PG_BIN}/initdb`, ['-D', dir, '-U', 'postgres', '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'], { cwd: root });
  fs.rmSync(pwfile);

  let caFile: string | undefined;
  const conf: string[] = ["listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`, 'fsync = off', 'synchronous_commit = off', 'full_page_writes = off', 'max_connections = 200'];
  if (opts.tls) {
    const certs = await makeServerCertificate(root);
    for (const f of [certs.certFile, certs.keyFile, certs.caFile]) fs.chownSync(f, pgUid, pgGid);
    caFile = certs.caFile;
    conf.push('ssl = on', `ssl_cert_file = '${certs.certFile}'`, `ssl_key_file = '${certs.keyFile}'`);
  }
  for (const [k, v] of Object.entries(opts.settings ?? {})) conf.push(`${k} = ${v}`);
  fs.appendFileSync(path.join(dir, 'postgresql.conf'), '\n# agentgate test cluster\n' + conf.join('\n') + '\n');

  const hostType = opts.tls && opts.requireTls ? 'hostssl' : 'host';
  const hba = [
    'local all all trust',
    ...(opts.hba ?? []).map((l) => (opts.tls && opts.requireTls ? l.replace(/^host\s/, 'hostssl ') : l)),
    `${hostType} all all 127.0.0.1/32 scram-sha-256`,
  ];
  fs.writeFileSync(path.join(dir, 'pg_hba.conf'), hba.join('\n') + '\n');

  const port = await freePort();
  const logFile = path.join(root, 'server.log');
  fs.writeFileSync(logFile, '');
  fs.chownSync(logFile, pgUid, pgGid);

  const start = async () => {
    try {
      await asPostgres(`${PG_BIN}/pg_ctl`, ['start', '-D', dir, '-w', '-t', '60', '-s', '-l', logFile, '-o', `-p ${port}`]);
    } catch (err) {
      const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : '';
      throw new Error(`PostgreSQL test cluster did not start: ${(err as Error).message}\n${log}`);
    }
  };
  const halt = async () => {
    try {
      await asPostgres(`${PG_BIN}/pg_ctl`, ['stop', '-D', dir, '-m', 'fast', '-w', '-s']);
    } catch {
      /* not running */
    }
  };
  await start();

  const host = '127.0.0.1';
  let stopped = false;
  const cluster: PgCluster = {
    host,
    port,
    dir,
    socketDir: dir,
    superuser: 'postgres',
    superPassword,
    caFile,
    url(user = 'postgres', password = user === 'postgres' ? superPassword : '', database = 'postgres') {
      const auth = password ? `${encodeURIComponent(user)}:${encodeURIComponent(password)}` : encodeURIComponent(user);
      return `postgres://${auth}@${host}:${port}/${encodeURIComponent(database)}`;
    },
    async sql(text, database = 'postgres') {
      const client = new pg.Client({ host: dir, port, user: 'postgres', database });
      await client.connect();
      try {
        const res = (await client.query(text)) as unknown as pg.QueryResult | pg.QueryResult[];
        const last = Array.isArray(res) ? res[res.length - 1] : res;
        return (last?.rows ?? []) as Record<string, unknown>[];
      } finally {
        await client.end();
      }
    },
    async createUser(name, password, o = {}) {
      const enc = o.encryption ?? 'scram-sha-256';
      await cluster.sql(
        `set password_encryption = ${quoteLiteral(enc)}; create role ${quoteIdent(name)} login ${o.superuser ? 'superuser' : ''} password ${quoteLiteral(password)}`,
      );
    },
    async createDatabase(name, owner) {
      await cluster.sql(`create database ${quoteIdent(name)}${owner ? ` owner ${quoteIdent(owner)}` : ''}`);
    },
    env(user = 'postgres', password = user === 'postgres' ? superPassword : '', database = 'postgres') {
      return { ...process.env, PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: database, PGSSLMODE: 'prefer' };
    },
    halt,
    start,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await asPostgres(`${PG_BIN}/pg_ctl`, ['stop', '-D', dir, '-m', 'immediate', '-w', '-s']);
      } catch {
        /* already down */
      }
      live.delete(dir);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  return cluster;
}
