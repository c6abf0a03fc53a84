import { expect } from 'chai';
import fc from 'fast-check';
import path from 'node:path';
import { canonicalJson } from '../../../core/audit/canonical.js';
import { verifyAuditFiles } from '../../../core/audit/verify.js';
import { chain, lineOf, tempDir, writeLines } from './fixture.js';

/** The same value with every object's keys in reverse insertion order. */
function reversedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reversedKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversedKeys(x)]));
  return v;
}

describe('audit properties (fast-check)', () => {
  it('canonical JSON is a function of the JSON value: key order and a parse round trip do not change it', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const c = canonicalJson(v);
        expect(canonicalJson(reversedKeys(v))).to.equal(c);
        expect(canonicalJson(JSON.parse(JSON.stringify(v)))).to.equal(c);
        expect(JSON.parse(c)).to.deep.equal(JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: 300 },
    );
  });

  it('verify rejects any change to any field of any record, and any deletion or swap of records', async () => {
    const { dir, cleanup } = tempDir();
    const file = path.join(dir, 'audit.log');
    const recs = chain(1, 8);
    const fields = ['statement', 'connection', 'stageTimestamp', 'seq', 'prevHash', 'auditID'] as const;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.record({ op: fc.constant('change' as const), i: fc.nat(7), field: fc.constantFrom(...fields), value: fc.string({ minLength: 1, maxLength: 8 }) }),
            fc.record({ op: fc.constant('delete' as const), i: fc.nat(6) }),
            fc.record({ op: fc.constant('swap' as const), i: fc.nat(6) }),
          ),
          async (m) => {
            const lines = recs.map((r) => ({ ...r }) as Record<string, unknown>);
            if (m.op === 'change') {
              const old = lines[m.i][m.field];
              lines[m.i][m.field] = typeof old === 'number' ? old + 1 : `${String(old)}${m.value}`;
            } else if (m.op === 'delete') {
              lines.splice(m.i, 1);
            } else {
              [lines[m.i], lines[m.i + 1]] = [lines[m.i + 1], lines[m.i]];
            }
            writeLines(file, lines.map(lineOf));
            const r = await verifyAuditFiles({ files: [file] });
            expect(r.ok, JSON.stringify(m)).to.equal(false);
          },
        ),
        { numRuns: 200 },
      );
    } finally {
      cleanup();
    }
  });
});
