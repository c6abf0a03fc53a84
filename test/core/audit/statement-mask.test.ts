import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { openAuditWriter } from '../../../core/audit/open.js';
import { verifyAuditFiles } from '../../../core/audit/verify.js';
import { loadSqlParser } from '../../../core/sql/index.js';
import type { MaskOptions } from '../../../core/mask/index.js';
import type { AuditRecord } from '../../../core/audit/types.js';
import { event, tempDir } from './fixture.js';

const readRecords = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRecord);

const DENY = { action: 'deny' as const, rule: 'no-cards', reason: 'rule no-cards denies select on cards', enforced: true };

describe('audit trail: card data in PostgreSQL statements', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  before(async () => loadSqlParser());
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'audit.log');
  });
  afterEach(() => cleanup());

  async function recorded(statements: { statement: string; decision?: typeof DENY; protocol?: 'postgres' | 'kubernetes' }[], opts: Parameters<typeof openAuditWriter>[0] extends infer O ? Partial<O> : never = {}): Promise<AuditRecord[]> {
    const w = await openAuditWriter({ file, ...opts });
    statements.forEach((s, i) => w.append(event(i + 1, s)));
    await w.close();
    expect((await verifyAuditFiles({ files: [file] })).summary).to.match(/^ok: /);
    return readRecords(file);
  }

  it('stars a card-field literal of an allowed statement', async () => {
    const [r] = await recorded([{ statement: "SELECT id FROM cards WHERE cvv = '123'" }]);
    expect(r.statement).to.equal("SELECT id FROM cards WHERE cvv = '***'");
  });

  it('stars a card-field literal and masks a PAN literal of a denied statement', async () => {
    const [r] = await recorded([{ statement: "SELECT * FROM cards WHERE pan = '4111111111111111' AND cvv = '123'", decision: DENY }]);
    expect(r.statement).to.equal("SELECT * FROM cards WHERE pan = '************1111' AND cvv = '***'");
  });

  it('stars a numeric card-field literal next to a numeric PAN literal', async () => {
    const [r] = await recorded([{ statement: 'INSERT INTO cards (pan, cvv) VALUES (4111111111111111, 123)' }]);
    expect(r.statement).to.equal('INSERT INTO cards (pan, cvv) VALUES (************1111, ***)');
  });

  it('stars the recorded Bind value of a parameter given to a card field, and masks PANs among the others', async () => {
    const [r] = await recorded([{ statement: "UPDATE cards SET cvv = $1 WHERE pan = $2 AND id = $3\n-- with $1 = '123', $2 = '4111111111111111', $3 = '7'" }]);
    expect(r.statement).to.equal("UPDATE cards SET cvv = $1 WHERE pan = $2 AND id = $3\n-- with $1 = '***', $2 = '************1111', $3 = '7'");
  });

  it('stars every literal and comment of a statement that names a card field but does not parse', async () => {
    const [r] = await recorded([{ statement: "SELEC * FROM cards WHERE cvv = '123' AND n = 42 -- pin 9876", decision: DENY }]);
    expect(r.statement).to.equal("SELEC * FROM cards WHERE cvv = '***' AND n = ** --*********");
  });

  it('leaves a statement without card data as written', async () => {
    const [r] = await recorded([{ statement: "SELECT id, note FROM orders WHERE note = 'ok' AND id = 42" }]);
    expect(r.statement).to.equal("SELECT id, note FROM orders WHERE note = 'ok' AND id = 42");
  });

  it('reads only PostgreSQL statements as SQL (a Kubernetes statement is a request line)', async () => {
    const [r] = await recorded([{ statement: "GET /api/v1/namespaces/payments/configmaps?cvv='123'", protocol: 'kubernetes' }]);
    expect(r.statement).to.equal("GET /api/v1/namespaces/payments/configmaps?cvv='123'");
  });

  it('stars the policy\'s extra card fields, and follows a change of the masking options from the next event', async () => {
    let opts: MaskOptions = {};
    const w = await openAuditWriter({ file, maskOptions: () => opts });
    w.append(event(1, { statement: "UPDATE cards SET magstripe = 'abc'" }));
    opts = { cardFields: ['magStripe'] };
    w.append(event(2, { statement: "UPDATE cards SET magstripe = 'abc'" }));
    w.append(event(3, { statement: 'x', requestObject: { magstripe: 'abc' } }));
    opts = { keep: 'bin+last4' };
    w.append(event(4, { statement: "SELECT '4111111111111111'" }));
    await w.close();
    expect(readRecords(file).map((r) => r.statement)).to.deep.equal(["UPDATE cards SET magstripe = 'abc'", "UPDATE cards SET magstripe = '***'", 'x', "SELECT '411111******1111'"]);
    expect(readRecords(file)[2].requestObject).to.deep.equal({ magstripe: '***' });
  });

  it('records a statement over the size bound as a masked prefix, its full length and the SHA-256 of the masked text', async () => {
    // Too long to parse for the audit record: naming a card field, all its literals are starred.
    const body = Array.from({ length: 240_000 }, (_, i) => `(${i}, '4111111111111111', '123')`).join(', ');
    const sql = `INSERT INTO cards (id, pan, cvv) VALUES ${body}`;
    expect(sql.length).to.be.greaterThan(8 * 1024 * 1024);
    const [r] = await recorded([{ statement: sql }]);
    const masked = `INSERT INTO cards (id, pan, cvv) VALUES ${Array.from({ length: 240_000 }, (_, i) => `(${'*'.repeat(String(i).length)}, '****************', '***')`).join(', ')}`;
    expect(r.statement).to.equal(`${masked.slice(0, 16 * 1024)}…`);
    expect(r.annotations).to.deep.equal({ 'agentgate.dev/statement-bytes': String(masked.length), 'agentgate.dev/statement-sha256': createHash('sha256').update(masked).digest('hex') });
    expect(readFileSync(file, 'utf8').length).to.be.lessThan(20 * 1024);
  });

  it('takes the size bound from its options', async () => {
    const [r] = await recorded([{ statement: "SELECT 'abcdefghij'" }], { maskLimits: { maxStatementBytes: 10 } });
    expect(r.statement).to.equal("SELECT 'ab…");
    expect(r.annotations!['agentgate.dev/statement-bytes']).to.equal('19');
  });
});
