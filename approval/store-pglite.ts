// The embedded default for a single replica and `make demo`: PGlite, PostgreSQL
// compiled to WASM, persisted to a directory (or in memory without one). Same SQL,
// same migrations as production. PGlite is one connection: its transactions are
// serialised, which is exactly the row lock's guarantee on a real server.

import { PGlite } from '@electric-sql/pglite';
import type { SqlDb, SqlQueryable } from './store.js';
import { SqlApprovalStore } from './store.js';

class PgliteDb implements SqlDb {
  readonly kind = 'pglite' as const;
  constructor(private readonly db: PGlite) {}

  async query(text: string, params?: unknown[]) {
    return (await this.db.query<Record<string, unknown>>(text, params)).rows;
  }

  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => fn({ query: async (t, p) => (await tx.query<Record<string, unknown>>(t, p)).rows }));
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** Opens (creating and migrating when new) an embedded store in `dir`, or in memory when `dir` is undefined. */
export async function openPgliteStore(dir?: string): Promise<SqlApprovalStore> {
  // The approval tables are tiny: PGlite's default 128MB of shared buffers would be RSS for nothing.
  const db = await PGlite.create({ ...(dir ? { dataDir: dir } : {}), postgresqlconf: ['shared_buffers=16MB'] });
  const store = new SqlApprovalStore(new PgliteDb(db));
  await store.migrate();
  return store;
}
