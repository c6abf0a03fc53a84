// The classification cache: keyed by the exact SQL text, bounded in entries and bytes.

import { expect } from 'chai';
import { loadSqlParser, SqlClassifier } from '../../../core/sql/index.js';
import { LruCache } from '../../../core/sql/cache.js';

describe('SQL classification cache', () => {
  before(async () => {
    await loadSqlParser();
  });

  it('answers a repeated text from the cache with the very same result', () => {
    const c = new SqlClassifier();
    const first = c.classify('SELECT * FROM cards WHERE id = $1', 'payments');
    const second = c.classify('SELECT * FROM cards WHERE id = $1', 'payments');
    expect(second).to.equal(first);
    expect(c.stats()).to.deep.include({ hits: 1, misses: 1, entries: 1 });
  });

  it('never shares an entry between texts that differ only in literals', () => {
    const c = new SqlClassifier();
    const keep = c.classify("SELECT * FROM t WHERE note = 'x'", 'payments');
    const drop = c.classify("SELECT * FROM t WHERE note = 'x'; DROP TABLE t; --'", 'payments');
    expect(c.stats()).to.deep.include({ hits: 0, misses: 2, entries: 2 });
    expect(keep.ok && keep.operations.map((o) => o.statement)).to.deep.equal(['select']);
    expect(drop.ok && drop.operations.map((o) => o.statement)).to.deep.equal(['select', 'drop']);
  });

  it('never shares an entry between texts that differ only in whitespace or case', () => {
    const c = new SqlClassifier();
    c.classify('select 1', 'payments');
    c.classify('SELECT 1', 'payments');
    c.classify('select  1', 'payments');
    expect(c.stats()).to.deep.include({ hits: 0, misses: 3, entries: 3 });
  });

  it('keeps one entry per connection for the same text', () => {
    const c = new SqlClassifier();
    const a = c.classify('SELECT 1', 'payments');
    const b = c.classify('SELECT 1', 'ledger');
    expect(a).to.not.equal(b);
    expect(c.stats()).to.deep.include({ misses: 2, entries: 2 });
  });

  it('caches syntax errors too', () => {
    const c = new SqlClassifier();
    c.classify('SELEC 1', 'payments');
    const again = c.classify('SELEC 1', 'payments');
    expect(again).to.deep.include({ ok: false, sqlstate: '42601' });
    expect(c.stats()).to.deep.include({ hits: 1, misses: 1 });
  });

  it('evicts the least recently used text beyond maxEntries', () => {
    const c = new SqlClassifier({ maxEntries: 2 });
    c.classify('SELECT 1', 'p');
    c.classify('SELECT 2', 'p');
    c.classify('SELECT 1', 'p'); // hit: SELECT 2 is now the oldest
    c.classify('SELECT 3', 'p'); // evicts SELECT 2
    expect(c.stats()).to.deep.include({ entries: 2, evictions: 1, hits: 1 });
    c.classify('SELECT 1', 'p');
    expect(c.stats().hits).to.equal(2);
    c.classify('SELECT 2', 'p');
    expect(c.stats().misses).to.equal(4);
  });

  it('stays within its byte budget', () => {
    const c = new SqlClassifier({ maxBytes: 20_000 });
    for (let i = 0; i < 1000; i++) c.classify(`SELECT * FROM table_${i} WHERE some_column = ${i}`, 'payments');
    const s = c.stats();
    expect(s.bytes).to.be.at.most(20_000);
    expect(s.entries).to.be.greaterThan(10).and.lessThan(1000);
    expect(s.evictions).to.equal(1000 - s.entries);
  });

  it('classifies but does not cache texts longer than maxCachedLength', () => {
    const c = new SqlClassifier({ maxCachedLength: 100 });
    const long = `INSERT INTO t VALUES ${Array.from({ length: 50 }, (_, i) => `(${i})`).join(', ')}`;
    const r = c.classify(long, 'payments');
    expect(r.ok && r.operations[0].statement).to.equal('insert');
    expect(c.stats().entries).to.equal(0);
  });

  it('LruCache drops an entry larger than the whole budget instead of flushing the rest', () => {
    const lru = new LruCache<string>({ maxEntries: 10, maxBytes: 1000 });
    lru.set('a', 'x', 10);
    lru.set('huge', 'y', 5000);
    expect(lru.get('huge')).to.equal(undefined);
    expect(lru.get('a')).to.equal('x');
  });
});
