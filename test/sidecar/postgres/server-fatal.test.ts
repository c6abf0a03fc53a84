// The server ending a session itself: its FATAL reaches the client as the last
// message, and the proxy adds none of its own. Real cluster, raw protocol client.

import { expect } from 'chai';
import { serialize } from 'pg-protocol';
import { startHarness } from './harness.js';
import type { Harness } from './harness.js';
import { RawClient, errorsOf } from './raw-client.js';

describe('PostgreSQL proxy: the server\'s own FATAL (real cluster)', function () {
  this.timeout(60_000);
  let h: Harness;

  before(async () => {
    h = await startHarness();
    await h.startProxy();
  });
  after(async () => {
    await h?.stop();
  });

  async function closed(c: RawClient): Promise<void> {
    for (let i = 0; i < 200 && !c.closed; i++) await new Promise((r) => setTimeout(r, 25));
    expect(c.closed, 'the proxy closed the client connection').to.equal(true);
  }

  it('forwards pg_terminate_backend\'s FATAL 57P01 alone, then closes', async () => {
    const c = await RawClient.connect(h.proxyPort);
    c.write(serialize.query('select pg_sleep(30) as terminate_me'));
    for (let i = 0; i < 200; i++) {
      const rows = await h.cluster.sql(`select pg_terminate_backend(pid) as done from pg_stat_activity where query like 'select pg_sleep(30) as terminate_me%' and pid <> pg_backend_pid()`);
      if (rows.length) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await closed(c);
    expect(errorsOf(c.messages)).to.deep.equal([{ code: '57P01', message: 'terminating connection due to administrator command' }]);
  });

  it('forwards idle_session_timeout\'s FATAL 57P05 alone, then closes', async () => {
    const c = await RawClient.connect(h.proxyPort);
    await c.batch([serialize.query("set idle_session_timeout = '200ms'")]);
    c.messages.length = 0;
    await closed(c);
    expect(errorsOf(c.messages)).to.deep.equal([{ code: '57P05', message: 'terminating connection due to idle-session timeout' }]);
  });
});
