// The production backend: PostgreSQL through `pg`. Several replicas share one
// database; a dedicated connection LISTENs so every replica's waiting clients
// learn of changes made by another replica.

import pg from 'pg';
import type { SqlDb, SqlQueryable } from './store.js';
import { NOTIFY_CHANNEL, SqlApprovalStore } from './store.js';
import { createLogger } from '../core/log.js';

const log = createLogger('approval');

export interface PostgresStoreOptions {
  /** postgres:// URL (libpq-style parameters such as sslmode are understood by `pg`). */
  url: string;
  maxConnections?: number;
}

class PgDb implements SqlDb {
  readonly kind = 'postgres' as const;
  private listener?: pg.Client;
  private closed = false;

  constructor(private readonly pool: pg.Pool, private readonly url: string) {
    // An idle client losing its server must not crash the process; the pool replaces it.
    pool.on('error', (err) => log.warn({ err: err.message }, 'approval store: idle PostgreSQL connection failed'));
  }

  async query(text: string, params?: unknown[]) {
    return (await this.pool.query(text, params)).rows as Record<string, unknown>[];
  }

  async transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('begin');
      const out = await fn({ query: async (t, p) => (await client.query(t, p)).rows as Record<string, unknown>[] });
      await client.query('commit');
      return out;
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async listen(onChange: (id: string) => void): Promise<void> {
    const connect = async (): Promise<void> => {
      const c = new pg.Client({ connectionString: this.url });
      c.on('notification', (m) => {
        if (m.channel === NOTIFY_CHANNEL && m.payload) onChange(m.payload);
      });
      c.on('error', (err) => {
        log.warn({ err: err.message }, 'approval store: LISTEN connection lost; reconnecting');
        c.end().catch(() => undefined);
        if (!this.closed) setTimeout(() => connect().catch(() => undefined), 1000).unref();
      });
      await c.connect();
      await c.query(`listen ${NOTIFY_CHANNEL}`);
      this.listener = c;
    };
    await connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => undefined);
    await this.pool.end();
  }
}

export async function openPostgresStore(opts: PostgresStoreOptions): Promise<SqlApprovalStore> {
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.maxConnections ?? 10 });
  const store = new SqlApprovalStore(new PgDb(pool, opts.url));
  await store.migrate();
  return store;
}

