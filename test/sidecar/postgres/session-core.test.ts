// The session between two in-memory sockets, from byte fixtures: what reaches the
// server for each client message, what reaches the client for each server answer.

import { expect } from 'chai';
import { serialize } from 'pg-protocol';
import { startFixture, be, errorFields, cstringAt, tick } from './session-fixture.js';
import type { Fixture, Frame } from './session-fixture.js';

const types = (frames: Frame[]) => frames.map((f) => f.type).join('');

/** Answers a marker the session sent in place of a refused message, as the server would. */
function answerMarker(fx: Fixture, sent: Frame, then: Buffer[] = [be.ready()]): void {
  const text = sent.type === 'D' ? cstringAt(sent.body, 1) : cstringAt(sent.body, sent.type === 'P' ? sent.body.indexOf(0) + 1 : 0);
  expect(text).to.match(/^agentgate_denied_/);
  fx.fromServer(be.error({ S: 'ERROR', V: 'ERROR', C: '42601', M: `syntax error at or near "${text}"` }), ...then);
}

describe('PostgreSQL session core (byte fixtures, no server)', () => {
  let fx: Fixture;
  beforeEach(async () => {
    fx = await startFixture();
    fx.server.take();
  });
  afterEach(() => fx.session.close('test over'));

  describe('the proxy\'s own Describe', () => {
    it('describes an undescribed portal itself and keeps the answer from the client', () => {
      fx.fromClient(serialize.parse({ text: 'select 1' }), serialize.bind({}), serialize.execute({}), serialize.sync());
      expect(types(fx.server.take())).to.equal('PBDES');
      fx.fromServer(be.parseComplete(), be.bindComplete(), be.rowDescription([['n', 23]]), be.dataRow(['1']), be.commandComplete('SELECT 1'), be.ready());
      expect(types(fx.client.take())).to.equal('12DCZ');
    });

    it('adds nothing when the client describes the portal itself', () => {
      fx.fromClient(serialize.parse({ text: 'select 1' }), serialize.bind({}), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync());
      expect(types(fx.server.take())).to.equal('PBDES');
      fx.fromServer(be.parseComplete(), be.bindComplete(), be.rowDescription([['n', 23]]), be.dataRow(['1']), be.commandComplete('SELECT 1'), be.ready());
      expect(types(fx.client.take())).to.equal('12TDCZ');
    });

    it('holds a binary Execute until its own Describe is answered, sending a Flush so the server answers', async () => {
      fx.fromClient(serialize.parse({ text: 'select 1' }), serialize.bind({ binary: true }), serialize.execute({}), serialize.sync());
      expect(types(fx.server.take())).to.equal('PBDH');
      fx.fromServer(be.parseComplete(), be.bindComplete(), be.rowDescription([['n', 23]]));
      expect(types(fx.client.take())).to.equal('12');
      await tick();
      expect(types(fx.server.take())).to.equal('ES');
    });
  });

  describe('waiting for an earlier batch', () => {
    it('holds back a Bind of a statement an unanswered batch parses, and sends it once the server answered', async () => {
      fx.fromClient(serialize.parse({ name: 's1', text: 'select 1' }), serialize.sync(), serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync());
      expect(types(fx.server.take())).to.equal('PS');
      fx.fromServer(be.parseComplete(), be.ready());
      await tick();
      expect(types(fx.server.take())).to.equal('BDES');
    });

    it('refuses the Bind when that earlier Parse failed', async () => {
      fx.fromClient(serialize.parse({ name: 's1', text: 'select 1' }), serialize.sync(), serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync());
      fx.server.take();
      fx.fromServer(be.error({ S: 'ERROR', V: 'ERROR', C: '42P05', M: 'prepared statement "s1" already exists' }), be.ready());
      await tick();
      const sent = fx.server.take();
      expect(types(sent)).to.equal('DES');
      fx.client.take();
      answerMarker(fx, sent[0]);
      const got = fx.client.take();
      expect(types(got)).to.equal('EZ');
      expect(errorFields(got[0].body)).to.include({ C: '26000', M: 'prepared statement "s1" does not exist' });
    });
  });

  describe('audit fail-closed', () => {
    it('refuses the next statement while an append fails, keeps the unwritten event, and recovers when the sink can write again', () => {
      fx.fromClient(serialize.query('select 1'));
      expect(types(fx.server.take())).to.equal('Q');
      fx.refuse = 'audit backlog full';
      fx.fromServer(be.rowDescription([['n', 23]]), be.dataRow(['1']), be.commandComplete('SELECT 1'), be.ready());
      expect(fx.events.filter((e) => e.statement === 'select 1')).to.have.length(0);
      fx.fromClient(serialize.query('select 2'));
      const sent = fx.server.take();
      expect(types(sent)).to.equal('Q');
      expect(cstringAt(sent[0].body)).to.match(/^agentgate_denied_/);
      fx.client.take();
      answerMarker(fx, sent[0]);
      const got = fx.client.take();
      expect(types(got)).to.equal('EZ');
      expect(errorFields(got[0].body)).to.include({
        C: '42501',
        M: 'agentgate: the audit trail cannot be written, so no statement is run (fail closed); the sidecar needs attention',
      });
      fx.refuse = undefined;
      fx.fromClient(serialize.query('select 3'));
      const third = fx.server.take();
      expect(cstringAt(third[0].body)).to.equal('select 3');
      expect(fx.events.filter((e) => e.statement).map((e) => [e.statement, e.decision?.rule])).to.deep.equal([
        ['select 1', 'reads'],
        ['select 2', 'audit-unavailable'],
      ]);
    });

    it('refuses statements while the sink reports itself unhealthy', () => {
      fx.healthy = false;
      fx.fromClient(serialize.parse({ name: 's', text: 'select 1' }), serialize.sync());
      const sent = fx.server.take();
      expect(types(sent)).to.equal('PS');
      expect(cstringAt(sent[0].body, 2)).to.match(/^agentgate_denied_/);
    });
  });

  describe('the server ending the session', () => {
    it('forwards the server\'s own FATAL and closes without adding one', () => {
      fx.fromClient(serialize.query('select pg_sleep(10)'));
      fx.server.take();
      fx.fromServer(be.error({ S: 'FATAL', V: 'FATAL', C: '57P01', M: 'terminating connection due to administrator command' }));
      fx.server.emit('end');
      const got = fx.client.take();
      expect(types(got)).to.equal('E');
      expect(errorFields(got[0].body)).to.include({ C: '57P01', S: 'FATAL' });
      expect(fx.client.ended).to.equal(true);
    });

    it('tells the client with its own FATAL when the server closes without one', () => {
      fx.server.emit('end');
      const got = fx.client.take();
      expect(types(got)).to.equal('E');
      expect(errorFields(got[0].body)).to.include({ C: '08006', S: 'FATAL' });
    });
  });

  describe('answers that do not fit', () => {
    it('closes the connection with FATAL 08P01 when the server answers a message the proxy did not send', () => {
      fx.fromServer(be.bindComplete());
      const got = fx.client.take();
      expect(types(got)).to.equal('E');
      expect(errorFields(got[0].body).C).to.equal('08P01');
      expect(errorFields(got[0].body).M).to.match(/do not match the messages sent/);
      expect(fx.client.ended).to.equal(true);
    });
  });
});
