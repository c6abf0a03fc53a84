// The conversation tracker on its own: statements and portals exist only once the
// server confirmed them, the skip to Sync after an error, and the names SQL commands
// make unknowable.

import { expect } from 'chai';
import { ABSENT, Desync, EFFECT_PORTALS, EFFECT_STATEMENTS, K, Tracker, UNKNOWN, WAIT, namespaceEffects } from '../../../sidecar/postgres/tracker.js';
import type { Portal, Stmt } from '../../../sidecar/postgres/tracker.js';
import type { Verdict } from '../../../sidecar/postgres/decide.js';
import { loadSqlParser } from '../../../core/sql/index.js';

const ALLOW: Verdict = { forward: true, operations: [], decision: { action: 'allow', rule: 'r', reason: 'r', enforced: true, matched: [] } };
const stmt = (sql: string, effects = 0): Stmt => ({ sql, verdict: ALLOW, effects });
const portalOf = (s: Stmt): Portal => ({ stmt: s, formats: [] });
const I = 0x49;
const T = 0x54;

describe('PostgreSQL conversation tracker', () => {
  let t: Tracker;
  beforeEach(() => {
    t = new Tracker();
  });

  describe('prepared statements', () => {
    it('knows no statement at the start of a session', () => {
      expect(t.statement('s1')).to.equal(ABSENT);
      expect(t.statement('')).to.equal(ABSENT);
    });

    it('reads a statement parsed earlier in the same batch as existing (the server skips the rest if that Parse fails)', () => {
      const s = stmt('select 1');
      t.push({ k: K.Parse, name: 's1', stmt: s, effects: 0 });
      expect(t.statement('s1')).to.equal(s);
    });

    it('answers WAIT for a statement an unanswered earlier batch parses', () => {
      t.push({ k: K.Parse, name: 's1', stmt: stmt('select 1'), effects: 0 });
      t.push({ k: K.Sync, name: '', effects: 0 });
      expect(t.statement('s1')).to.equal(WAIT);
      expect(t.statement('other')).to.equal(ABSENT);
    });

    it('installs a statement on ParseComplete', () => {
      const s = stmt('select 1');
      t.push({ k: K.Parse, name: 's1', stmt: s, effects: 0 });
      t.push({ k: K.Sync, name: '', effects: 0 });
      t.complete(K.Parse);
      t.ready(I);
      expect(t.statement('s1')).to.equal(s);
    });

    it('keeps the old statement when a Parse of the same name fails', () => {
      const first = stmt('delete from victims');
      t.push({ k: K.Parse, name: 's1', stmt: first, effects: 0 });
      t.complete(K.Parse);
      t.push({ k: K.Parse, name: 's1', stmt: stmt('select 1'), effects: 0 });
      t.push({ k: K.Sync, name: '', effects: 0 });
      t.error();
      t.ready(I);
      expect(t.statement('s1')).to.equal(first);
    });

    it('drops the unnamed statement when a Parse of it fails (PostgreSQL drops it before parsing)', () => {
      t.push({ k: K.Parse, name: '', stmt: stmt('select 1'), effects: 0 });
      t.complete(K.Parse);
      t.push({ k: K.Parse, name: '', stmt: stmt('selec 2'), effects: 0 });
      t.error();
      expect(t.statement('')).to.equal(ABSENT);
    });

    it('retires a Close the server skipped after an earlier error without forgetting the statement', () => {
      const s = stmt('do $$ begin end $$');
      t.push({ k: K.Parse, name: 's1', stmt: s, effects: 0 });
      t.complete(K.Parse);
      t.push({ k: K.Bind, name: '', portal: portalOf(s), effects: 0 });
      t.push({ k: K.CloseStmt, name: 's1', effects: 0 });
      t.push({ k: K.Sync, name: '', effects: 0 });
      const retired = t.error();
      expect(retired.map((e) => e.k)).to.deep.equal([K.Bind, K.CloseStmt]);
      t.ready(I);
      expect(t.statement('s1')).to.equal(s);
    });

    it('forgets a statement on CloseComplete', () => {
      t.push({ k: K.Parse, name: 's1', stmt: stmt('select 1'), effects: 0 });
      t.complete(K.Parse);
      t.push({ k: K.CloseStmt, name: 's1', effects: 0 });
      expect(t.statement('s1')).to.equal(ABSENT);
      t.complete([K.CloseStmt, K.ClosePortal]);
      expect(t.statement('s1')).to.equal(ABSENT);
    });

    it('makes every named statement unknown once SQL PREPARE, DEALLOCATE or DISCARD ran, until a confirmed Close', () => {
      const s = stmt('select 1');
      t.push({ k: K.Parse, name: 's1', stmt: s, effects: 0 });
      t.complete(K.Parse);
      t.push({ k: K.Query, name: '', effects: EFFECT_STATEMENTS });
      expect(t.statement('s1')).to.equal(WAIT);
      t.ready(I);
      expect(t.statement('s1')).to.equal(UNKNOWN);
      expect(t.statement('never-seen')).to.equal(UNKNOWN);
      expect(t.statement('')).to.equal(ABSENT);
      t.push({ k: K.CloseStmt, name: 's1', effects: 0 });
      t.complete(K.CloseStmt);
      expect(t.statement('s1')).to.equal(ABSENT);
    });

    it('drops the unnamed statement and portal at a simple Query', () => {
      const s = stmt('select 1');
      t.push({ k: K.Parse, name: '', stmt: s, effects: 0 });
      t.complete(K.Parse);
      t.push({ k: K.Query, name: '', effects: 0 });
      t.ready(I);
      expect(t.statement('')).to.equal(ABSENT);
    });
  });

  describe('portals', () => {
    it('reads a portal bound in the same batch, and WAITs for one an unanswered batch boundary may drop', () => {
      const p = portalOf(stmt('select 1'));
      t.push({ k: K.Bind, name: 'p1', portal: p, effects: 0 });
      expect(t.portal('p1')).to.equal(p);
      t.complete(K.Bind);
      t.push({ k: K.Sync, name: '', effects: 0 });
      expect(t.portal('p1')).to.equal(WAIT);
    });

    it('keeps portals inside a transaction block and drops them when it ends', () => {
      const p = portalOf(stmt('select 1'));
      t.push({ k: K.Bind, name: 'p1', portal: p, effects: 0 });
      t.complete(K.Bind);
      t.push({ k: K.Sync, name: '', effects: 0 });
      t.ready(T);
      expect(t.portal('p1')).to.equal(p);
      t.push({ k: K.Sync, name: '', effects: 0 });
      t.ready(I);
      expect(t.portal('p1')).to.equal(ABSENT);
    });

    it('forgets the portal of a failed Bind', () => {
      const s = stmt('select $1::int');
      t.push({ k: K.Bind, name: '', portal: portalOf(s), effects: 0 });
      t.complete(K.Bind);
      t.push({ k: K.Bind, name: '', portal: portalOf(s), effects: 0 });
      t.error();
      expect(t.portal('')).to.equal(ABSENT);
    });

    it('makes named portals unknown after SQL DECLARE or CLOSE', () => {
      t.push({ k: K.Execute, name: '', effects: EFFECT_PORTALS });
      expect(t.portal('cur')).to.equal(UNKNOWN);
      t.complete(K.Execute);
      expect(t.portal('cur')).to.equal(UNKNOWN);
    });
  });

  describe('the server skipping to Sync', () => {
    it('skips to the queued Sync after an error and stops there', () => {
      t.push({ k: K.Bind, name: '', portal: portalOf(stmt('select 1')), effects: 0 });
      t.push({ k: K.Execute, name: '', effects: 0 });
      t.push({ k: K.Sync, name: '', effects: 0 });
      t.push({ k: K.Parse, name: 'next', stmt: stmt('select 2'), effects: 0 });
      expect(t.error().map((e) => e.k)).to.deep.equal([K.Bind, K.Execute]);
      expect(t.skipping).to.equal(false);
      expect(t.pending.map((e) => e.k)).to.deep.equal([K.Sync, K.Parse]);
    });

    it('knows the server skips what the client sends next when no Sync was sent yet, until the client sends one', () => {
      t.push({ k: K.Execute, name: '', effects: 0 });
      t.error();
      expect(t.skipping).to.equal(true);
      t.synced();
      expect(t.skipping).to.equal(false);
    });

    it('does not skip after the error of a simple Query (answered by ReadyForQuery)', () => {
      t.push({ k: K.Query, name: '', effects: 0 });
      expect(t.error()).to.deep.equal([]);
      expect(t.skipping).to.equal(false);
      expect(t.ready(I).map((e) => e.k)).to.deep.equal([K.Query]);
    });
  });

  describe('answers that do not fit', () => {
    it('throws Desync on a ParseComplete nobody asked for', () => {
      expect(() => t.complete(K.Parse)).to.throw(Desync);
    });

    it('throws Desync on a ParseComplete for a Parse the proxy refused', () => {
      t.push({ k: K.Parse, name: 's1', effects: 0 });
      expect(() => t.complete(K.Parse)).to.throw(Desync, 'refused');
    });

    it('throws Desync on a ReadyForQuery with no Sync or Query sent', () => {
      t.push({ k: K.Parse, name: 's1', stmt: stmt('select 1'), effects: 0 });
      expect(() => t.ready(I)).to.throw(Desync);
    });
  });

  describe('SQL commands on the name spaces', () => {
    before(() => loadSqlParser());

    const cases: [string, number][] = [
      ['select 1', 0],
      ['select close_price from quotes', 0],
      ['prepare p as select 1', EFFECT_STATEMENTS],
      ['deallocate all', EFFECT_STATEMENTS],
      ['select 1; DEALLOCATE p', EFFECT_STATEMENTS],
      ['declare c cursor for select 1', EFFECT_PORTALS],
      ['close all', EFFECT_PORTALS],
      ['discard all', EFFECT_STATEMENTS | EFFECT_PORTALS],
      ['/* a /* nested */ comment */ prepare p as select 1', EFFECT_STATEMENTS],
      ['prepare p as select (', EFFECT_STATEMENTS | EFFECT_PORTALS],
    ];
    for (const [sql, fx] of cases) {
      it(`reads ${JSON.stringify(sql)} as ${fx}`, () => {
        expect(namespaceEffects(sql)).to.equal(fx);
      });
    }
  });
});
