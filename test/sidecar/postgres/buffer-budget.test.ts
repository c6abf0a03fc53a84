// One budget for the client bytes every connection holds while a large message arrives
// in pieces: once it is spent, a new large message is refused with a clear FATAL, and
// the bytes come back when the message is complete or its connection closes.

import { expect } from 'chai';
import { serialize } from 'pg-protocol';
import { ByteBudget } from '../../../sidecar/postgres/wire.js';
import { FIXTURE_POLICY, startFixture, errorFields } from './session-fixture.js';
import type { Fixture } from './session-fixture.js';

describe('PostgreSQL proxy: process-wide budget for buffered client messages', () => {
  const open: Fixture[] = [];
  afterEach(() => {
    for (const f of open.splice(0)) f.session.close('test over');
  });

  async function session(budget: ByteBudget): Promise<Fixture> {
    const fx = await startFixture(FIXTURE_POLICY, { clientBuffers: budget });
    fx.server.take();
    open.push(fx);
    return fx;
  }
  const query = (bytes: number) => serialize.query(`select '${'x'.repeat(bytes - 14)}'`);

  it('refuses a large message with FATAL 53200 while other connections hold the budget, and frees it once their message is complete', async () => {
    const budget = new ByteBudget(1000);
    const a = await session(budget);
    const b = await session(budget);
    const big = query(800);
    a.fromClient(big.subarray(0, 100));
    expect(budget.inUse).to.equal(big.length);
    const other = query(500);
    b.fromClient(other.subarray(0, 100));
    const got = b.client.take();
    expect(got.map((f) => f.type)).to.deep.equal(['E']);
    expect(errorFields(got[0].body)).to.include({ S: 'FATAL', C: '53200' });
    expect(errorFields(got[0].body).M).to.match(/^agentgate: message of 500 bytes refused: the sidecar's buffer for client messages \(1000 bytes, shared by all connections\) is spent/);
    expect(b.client.ended).to.equal(true);
    a.fromClient(big.subarray(100));
    expect(a.server.take().map((f) => f.type)).to.deep.equal(['Q']);
    expect(budget.inUse).to.equal(0);
    const c = await session(budget);
    c.fromClient(other.subarray(0, 100));
    c.fromClient(other.subarray(100));
    expect(c.server.take().map((f) => f.type)).to.deep.equal(['Q']);
  });

  it('gives the budget back when a connection closes in the middle of a message', async () => {
    const budget = new ByteBudget(1000);
    const a = await session(budget);
    a.fromClient(query(800).subarray(0, 10));
    expect(budget.inUse).to.be.greaterThan(0);
    a.session.close('client went away');
    expect(budget.inUse).to.equal(0);
  });

  it('holds nothing of the budget for messages that arrive whole', async () => {
    const budget = new ByteBudget(10);
    const a = await session(budget);
    a.fromClient(query(800));
    expect(a.server.take().map((f) => f.type)).to.deep.equal(['Q']);
    expect(budget.inUse).to.equal(0);
  });
});
