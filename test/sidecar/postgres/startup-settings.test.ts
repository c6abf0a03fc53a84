// Settings a client asks for at startup (StartupMessage parameters and `options`) reach
// the server as the server itself would have read them, are decided by policy where
// they change how the session behaves, or are refused with a FATAL naming them. None is
// dropped. Differential tests connect straight to the server and through the proxy with
// the same options string and compare what SHOW reports.

import { expect } from 'chai';
import fs from 'node:fs';
import pg from 'pg';
import { startHarness, psql, readAudit, TEST_POLICY } from './harness.js';
import type { Harness } from './harness.js';
import { commandLineSettings, splitOptions } from '../../../sidecar/postgres/startup-settings.js';
import { frames, rawExchange, startupPacket } from './raw-startup.js';

async function connectError(config: pg.ClientConfig): Promise<pg.DatabaseError> {
  const c = new pg.Client(config);
  c.on('error', () => {});
  const err = await c.connect().then(
    () => undefined,
    (e: pg.DatabaseError) => e,
  );
  await c.end().catch(() => {});
  if (!err) throw new Error('connected, but a refusal was expected');
  return err;
}

async function show(config: pg.ClientConfig, names: string[]): Promise<Record<string, string>> {
  const c = new pg.Client(config);
  await c.connect();
  try {
    const out: Record<string, string> = {};
    for (const n of names) out[n] = (await c.query(`select current_setting('${n}') as v`)).rows[0].v;
    return out;
  } finally {
    await c.end();
  }
}

describe('pg_split_opts and the switches of `options`, as PostgreSQL 15 reads them', () => {
  it('splits on unescaped white space and keeps a backslash-escaped space in the word', () => {
    expect(splitOptions('  -c\tapplication_name=a\\ b   -c x=1 ')).to.deep.equal(['-c', 'application_name=a b', '-c', 'x=1']);
  });

  it('drops the escaping backslash, keeps an escaped backslash once, and drops a trailing one', () => {
    expect(splitOptions('a\\\\b c\\')).to.deep.equal(['a\\b', 'c']);
  });

  it('reads -c name=value, -cname=value and --name=value, with - in a name read as _', () => {
    expect(commandLineSettings('-c statement_timeout=5s -clock_timeout=1s --idle-session-timeout=2min')).to.deep.equal([
      ['statement_timeout', '5s'],
      ['lock_timeout', '1s'],
      ['idle_session_timeout', '2min'],
    ]);
  });

  it('splits a value at the first = only', () => {
    expect(commandLineSettings('--application_name=a=b')).to.deep.equal([['application_name', 'a=b']]);
  });

  for (const [options, why] of [
    ['-e', '"-e" is not a -c name=value'],
    ['-c', '-c needs a name=value after it'],
    ['-c statement_timeout', '-c statement_timeout requires a name and a value'],
    ['--', '"--" is not a -c name=value'],
    ['payments', '"payments" is not a -c name=value'],
    ['-c application_name=caf\u00e9', 'outside printable ASCII'],
    ['-c application_name=a\u00a0b', 'outside printable ASCII'],
  ] as const) {
    it(`refuses ${JSON.stringify(options)} (${why})`, () => {
      expect(() => commandLineSettings(options)).to.throw(why);
    });
  }
});

describe('sidecar postgres: startup settings through the real sidecar', function () {
  this.timeout(120_000);
  let h: Harness;
  let direct: (extra?: Partial<pg.ClientConfig>) => pg.ClientConfig;

  before(async () => {
    h = await startHarness();
    await h.startProxy();
    direct = (extra = {}) => ({ connectionString: h.cluster.url('agent_rw', 'agent-secret-Ü1', 'payments'), ...extra });
  });
  after(async () => h?.stop());

  it('gives psql with PGOPTIONS="-c default_transaction_read_only=on" a read-only session: the server refuses the INSERT with 25006', async () => {
    const r = await psql({ ...h.proxyEnv(), PGOPTIONS: '-c default_transaction_read_only=on' }, ['-A', '-t', '-c', 'show default_transaction_read_only', '-c', "insert into items(name, price) values ('x', 1)"]);
    expect(r.stdout.trim()).to.equal('on');
    expect(r.stderr).to.contain('ERROR:  cannot execute INSERT in a read-only transaction');
  });

  it('passes the pg driver\'s statement_timeout: the server cancels pg_sleep with 57014', async () => {
    const c = new pg.Client(h.clientConfig({ statement_timeout: 200 }));
    await c.connect();
    try {
      expect((await c.query('show statement_timeout')).rows).to.deep.equal([{ statement_timeout: '200ms' }]);
      const err = await c.query('select pg_sleep(5)').then(
        () => undefined,
        (e: pg.DatabaseError) => e,
      );
      expect(err?.code).to.equal('57014');
    } finally {
      await c.end();
    }
  });

  it('records each session setting it passed as the SET it was decided as, with the rule', async () => {
    await show(h.clientConfig({ options: '-c default_transaction_isolation=serializable' }), ['default_transaction_isolation']);
    let e: Record<string, any> | undefined;
    for (let i = 0; i < 50 && !e; i++) {
      e = readAudit(h.auditFile).find((x) => x.event === 'startup-setting' && x.statement === "SET default_transaction_isolation TO 'serializable'");
      if (!e) await new Promise((r) => setTimeout(r, 100));
    }
    expect(e?.decision).to.include({ action: 'allow', rule: 'agents-work-with-data' });
  });

  it('passes lock_timeout and idle_in_transaction_session_timeout sent as startup parameters of their own', async () => {
    const got = await show(h.clientConfig({ lock_timeout: 1500, idle_in_transaction_session_timeout: 60_000 }), ['lock_timeout', 'idle_in_transaction_session_timeout']);
    expect(got).to.deep.equal({ lock_timeout: '1500ms', idle_in_transaction_session_timeout: '1min' });
  });

  const NAMES = ['application_name', 'statement_timeout', 'lock_timeout', 'default_transaction_isolation', 'idle_session_timeout'];
  for (const options of [
    '-c application_name=a\\ b\\\\c',
    '-capplication_name=tight --lock-timeout=2s',
    '\t-c  statement_timeout=3s\n-c statement_timeout=4s ',
    '-c default_transaction_isolation=repeatable\\ read',
    '--idle_session_timeout=1h -c application_name=trailing\\',
  ]) {
    it(`reads options ${JSON.stringify(options)} exactly as the server does`, async () => {
      const straight = await show(direct({ options }), NAMES);
      const proxied = await show(h.clientConfig({ options }), NAMES);
      expect(proxied).to.deep.equal(straight);
    });
  }

  it('lets a startup parameter override the same setting in options, as the server does', async () => {
    const cfg = { options: '-c lock_timeout=7s', lock_timeout: 9000 };
    expect(await show(h.clientConfig(cfg), ['lock_timeout'])).to.deep.equal(await show(direct(cfg), ['lock_timeout']));
  });

  it('refuses a setting it does not know to be harmless with a FATAL naming it (work_mem)', async () => {
    const err = await connectError(h.clientConfig({ options: '-c work_mem=1GB' }));
    expect(err.severity).to.equal('FATAL');
    expect(err.code).to.equal('28000');
    expect(err.message).to.match(/^agentgate: startup parameter work_mem=1GB is refused: the proxy passes through only the settings it knows to be harmless at startup \(.*\); SET it after connecting, where the policy decides$/);
  });

  it('refuses a role change asked for in options', async () => {
    const r = await psql({ ...h.proxyEnv(), PGOPTIONS: '-c role=postgres' }, ['-c', 'select 1']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.contain('FATAL:  agentgate: startup parameter role=postgres is refused');
  });

  it('refuses a switch other than -c and --name=value (-e would set DateStyle behind the proxy\'s back)', async () => {
    const err = await connectError(h.clientConfig({ options: '-e' }));
    expect(err.message).to.equal('agentgate: startup parameter options=-e is refused: "-e" is not a -c name=value or --name=value setting (the only forms the proxy passes on)');
  });

  it('relays the server\'s own refusal of a bad value (22023), naming the connection', async () => {
    const err = await connectError(h.clientConfig({ options: '-c statement_timeout=banana' }));
    expect(err.code).to.equal('22023');
    expect(err.message).to.equal('agentgate: connection "payments": the database refused a startup setting: invalid value for parameter "statement_timeout": "banana"');
  });

  it('answers protocol 3.1 and a _pq_ option with NegotiateProtocolVersion, as the server does, and then serves the session', async () => {
    const pkt = startupPacket(196609, { user: 'agent_rw', database: 'payments', '_pq_.compression': 'on' });
    const straight = frames(await rawExchange(h.cluster.port, [pkt], { until: 0x52 }));
    const proxied = frames(await rawExchange(h.proxyPort, [pkt], { until: 0x5a }));
    expect(proxied[0]).to.deep.equal(straight[0]);
    expect(proxied[0]!.type).to.equal('v');
    expect(proxied.map((f) => f.type).slice(-1)).to.deep.equal(['Z']);
  });

  describe('under a policy that denies SET', () => {
    before(async () => {
      await h.stopProxy();
      fs.writeFileSync(h.policyFile, TEST_POLICY.replace('transaction, set, show', 'transaction, show') + `    - name: no-session-settings
      postgres: { statements: [set] }
      action: deny
`);
      await h.startProxy();
    });
    after(async () => {
      await h.stopProxy();
      fs.writeFileSync(h.policyFile, TEST_POLICY);
      await h.startProxy();
    });

    it('refuses statement_timeout with FATAL 42501 naming the rule', async () => {
      const err = await connectError(h.clientConfig({ statement_timeout: 1000 }));
      expect(err.severity).to.equal('FATAL');
      expect(err.code).to.equal('42501');
      expect(err.message).to.match(/^agentgate: startup parameter statement_timeout=1000 is refused: permission denied: .*no-session-settings/);
    });

    it('still passes the protocol settings every driver sends (application_name, client_encoding)', async () => {
      expect(await show(h.clientConfig({ application_name: 'agent-7' }), ['application_name', 'client_encoding'])).to.deep.equal({ application_name: 'agent-7', client_encoding: 'UTF8' });
    });

    it('records the refusal with its reason in the audit trail', async () => {
      const events = readAudit(h.auditFile).filter((e) => e.event === 'connection-refused' && e.responseStatus?.reason === 'policy');
      expect(events.length).to.be.greaterThan(0);
      expect(events[events.length - 1].responseStatus.message).to.contain('statement_timeout=1000');
    });
  });
});
