// Sessions whose settings make the server read SQL text differently from the classifier
// (standard_conforming_strings off, a client_encoding whose characters can hide `\` or `'`)
// are refused: asked for at startup (a parameter or `options=-c …`), or reported by the
// server in ParameterStatus (a role's ALTER ROLE … SET, set_config inside a function).
// The injection these settings enable: `SELECT '\'' , 1; DROP TABLE victim; --'` is one
// SELECT for the parser and a SELECT plus a DROP for a server with the setting off.

import { expect } from 'chai';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { serialize, parse as parseBackend } from 'pg-protocol';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { startHarness, psql, readAudit, run, AGENT_PASSWORD } from './harness.js';
import type { Harness } from './harness.js';
import { errorFields, frames, rawExchange, startupPacket } from './raw-startup.js';

const injection = (table: string) => `SELECT '\\'' , 1; DROP TABLE ${table}; --'`;
const INJECTION = injection('victim');

/** Sends a StartupMessage with the given parameters; resolves with what the proxy answers until it closes or is ready. */
function rawStartup(port: number, params: Record<string, string>): Promise<BackendMessage[]> {
  return new Promise((resolve, reject) => {
    const got: BackendMessage[] = [];
    const sock = net.connect(port, '127.0.0.1', () => sock.write(serialize.startup(params)));
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(got);
    };
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer; got ${got.map((m) => m.name).join(',')}`));
    }, 10_000);
    void parseBackend(sock, (m) => {
      got.push(m);
      if (m.name === 'readyForQuery') done();
    });
    sock.on('close', done).on('error', () => {});
  });
}

async function victimExists(h: Harness): Promise<boolean> {
  const rows = await h.cluster.sql(`select to_regclass('public.victim') is not null as present`, 'payments');
  return rows[0].present === true;
}

describe('sidecar postgres: session settings the classifier cannot read under', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = await startHarness();
    await h.cluster.createUser('legacy_app', 'legacy-secret-1');
    await h.cluster.sql(
      `alter role legacy_app set standard_conforming_strings = off;
       create table victim(id int);
       alter table victim owner to legacy_app;
       create table victim_direct(id int);
       alter table victim_direct owner to legacy_app;
       grant all on schema public to legacy_app;
       create function flip_scs() returns text language sql as $$ select set_config('standard_conforming_strings', 'off', false) $$;
       grant execute on function flip_scs() to agent_rw;`,
      'payments',
    );
    await h.startProxy();
  });
  after(async () => {
    await h?.stop();
  });

  describe('asked for at startup', () => {
    it('refuses psql with PGOPTIONS="-c standard_conforming_strings=off" with a FATAL naming the setting', async () => {
      const r = await psql({ ...h.proxyEnv(), PGOPTIONS: '-c standard_conforming_strings=off' }, ['-c', 'select 1']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('FATAL:  agentgate: startup parameter standard_conforming_strings=off is refused: standard_conforming_strings must stay on');
    });

    it('refuses the long form --standard-conforming-strings=off in options', async () => {
      const r = await psql({ ...h.proxyEnv(), PGOPTIONS: '--standard-conforming-strings=off' }, ['-c', 'select 1']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('startup parameter standard_conforming_strings=off is refused');
    });

    it('refuses standard_conforming_strings=off sent as a startup parameter of its own', async () => {
      const got = await rawStartup(h.proxyPort, { user: 'agent', database: 'payments', standard_conforming_strings: 'off' });
      expect(got.map((m) => m.name)).to.deep.equal(['error']);
      const e = got[0] as unknown as { severity: string; code: string; message: string };
      expect(e.severity).to.equal('FATAL');
      expect(e.message).to.match(/^agentgate: startup parameter standard_conforming_strings=off is refused: standard_conforming_strings must stay on/);
    });

    it('gives the pg driver asking for client_encoding SJIS through options the UTF8 session the server gives it (its own client_encoding parameter wins)', async () => {
      // pg-protocol sends client_encoding=UTF8 after the parameters; the server applies options first.
      const encoding = async (cfg: pg.ClientConfig) => {
        const c = new pg.Client(cfg);
        await c.connect();
        try {
          return (await c.query('show client_encoding')).rows[0].client_encoding as string;
        } finally {
          await c.end();
        }
      };
      const options = '-c client_encoding=SJIS';
      expect(await encoding(h.clientConfig({ options }))).to.equal(await encoding({ connectionString: h.cluster.url('agent_rw', AGENT_PASSWORD, 'payments'), options }));
      expect(await encoding(h.clientConfig({ options }))).to.equal('UTF8');
    });

    it('refuses client_encoding SJIS in options when no later parameter overrides it', async () => {
      const got = frames(await rawExchange(h.proxyPort, [startupPacket(196608, { user: 'agent', database: 'payments', options: '-c client_encoding=SJIS' })]));
      expect(got.map((f) => f.type)).to.deep.equal(['E']);
      expect(errorFields(got[0]!.body).M).to.equal(
        'agentgate: startup parameter client_encoding=SJIS is refused: client_encoding must be UTF8 (not SJIS): the proxy reads statements as UTF-8',
      );
    });

    it('refuses psql with PGCLIENTENCODING=SJIS', async () => {
      const r = await psql({ ...h.proxyEnv(), PGCLIENTENCODING: 'SJIS' }, ['-c', 'select 1']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('startup parameter client_encoding=SJIS is refused');
    });

    it('refuses a non-default search_path given in options', async () => {
      const r = await psql({ ...h.proxyEnv(), PGOPTIONS: '-c search_path=secret,public' }, ['-c', 'select 1']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('startup parameter search_path=secret,public is refused: search_path must stay the default');
    });

    it('lets harmless options and client_encoding UTF8 through', async () => {
      const r = await psql({ ...h.proxyEnv(), PGOPTIONS: '-c standard_conforming_strings=on', PGCLIENTENCODING: 'UTF8' }, ['-A', '-t', '-c', 'show standard_conforming_strings']);
      expect(r.stderr).to.equal('');
      expect(r.stdout.trim()).to.equal('on');
    });
  });

  describe('reported by the server', () => {
    it('(the threat) directly, a legacy_app session runs the hidden DROP', async () => {
      const r = await psql(h.cluster.env('legacy_app', 'legacy-secret-1', 'payments'), ['-c', injection('victim_direct')]);
      expect(r.stderr).to.not.contain('ERROR');
      const rows = await h.cluster.sql(`select to_regclass('public.victim_direct') is null as gone`, 'payments');
      expect(rows[0].gone).to.equal(true);
    });

    describe('a role configured with ALTER ROLE … SET standard_conforming_strings = off', () => {
      before(async () => {
        await h.stopProxy();
        const pw = path.join(h.dir, 'legacy-password');
        fs.writeFileSync(pw, 'legacy-secret-1\n', { mode: 0o600 });
        await h.startProxy({
          upstream: `
      host: 127.0.0.1
      port: ${h.cluster.port}
      database: payments
      user: legacy_app
      passwordFile: ${pw}`,
        });
      });
      after(async () => {
        await h.stopProxy();
        await h.startProxy();
      });

      it('refuses the injection with 42501 naming the setting, and the DROP never runs', async () => {
        const r = await psql(h.proxyEnv(), ['-c', INJECTION]);
        expect(r.stderr).to.contain(
          'ERROR:  agentgate: the server reports standard_conforming_strings = off for this session; standard_conforming_strings must stay on',
        );
        expect(await victimExists(h)).to.equal(true);
      });

      it('refuses every statement of the pg driver, simple and extended, with SQLSTATE 42501', async () => {
        const c = new pg.Client(h.clientConfig());
        await c.connect();
        try {
          for (const q of [{ text: 'select 1' }, { text: 'select $1::int', values: [1] }]) {
            const err = await c.query(q).then(
              () => undefined,
              (e: pg.DatabaseError) => e,
            );
            expect(err?.code).to.equal('42501');
            expect(err?.message).to.contain('every statement of this session is refused');
          }
        } finally {
          await c.end();
        }
        expect(await victimExists(h)).to.equal(true);
      });

      it('records the refusal in the audit log', async () => {
        const events = readAudit(h.auditFile).filter((e) => e.event === 'session-parameter-refused');
        expect(events.length).to.be.greaterThan(0);
        expect(events[0].sqlstate).to.equal('42501');
      });
    });

    it('refuses every statement after a function turned standard_conforming_strings off', async () => {
      const c = new pg.Client(h.clientConfig());
      await c.connect();
      try {
        const flipped = await c.query('select flip_scs() as v');
        expect(flipped.rows).to.deep.equal([{ v: 'off' }]);
        const err = await c.query(INJECTION).then(
          () => undefined,
          (e: pg.DatabaseError) => e,
        );
        expect(err?.code).to.equal('42501');
        expect(err?.message).to.contain('the server reports standard_conforming_strings = off');
      } finally {
        await c.end();
      }
      expect(await victimExists(h)).to.equal(true);
    });
  });

  describe('statements pipelined behind one that changes a setting', () => {
    /** Connects, sends `frames` in one write, and collects the answers up to the `rfqs`-th ReadyForQuery. */
    async function pipeline(frames: Buffer[], rfqs: number): Promise<BackendMessage[]> {
      const sock = net.connect(h.proxyPort, '127.0.0.1');
      const got: BackendMessage[] = [];
      let ready = 0;
      let startupDone = false;
      try {
        return await new Promise<BackendMessage[]>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`timeout; got ${got.map((m) => m.name).join(',')}`)), 15_000);
          void parseBackend(sock, (m) => {
            if (!startupDone) {
              if (m.name === 'readyForQuery') {
                startupDone = true;
                sock.write(Buffer.concat(frames));
              }
              return;
            }
            got.push(m);
            if (m.name === 'readyForQuery' && ++ready === rfqs) {
              clearTimeout(timer);
              resolve(got);
            }
          });
          sock.on('error', reject);
          sock.write(serialize.startup({ user: 'agent', database: 'payments' }));
        });
      } finally {
        sock.destroy();
      }
    }
    const errors = (ms: BackendMessage[]) => ms.filter((m) => m.name === 'error') as unknown as { code: string; message: string }[];

    it('a simple query sent right behind the flip waits for the server and is then refused; the DROP never runs', async () => {
      const got = await pipeline([serialize.query('select flip_scs()'), serialize.query(INJECTION)], 2);
      const errs = errors(got);
      expect(errs.map((e) => e.code)).to.deep.equal(['42501']);
      expect(errs[0].message).to.contain('the server reports standard_conforming_strings = off');
      expect(await victimExists(h)).to.equal(true);
    });

    it('a Parse after an Execute of the same pipeline with a backslash in its text is refused', async () => {
      const got = await pipeline(
        [
          serialize.parse({ text: 'select flip_scs()' }),
          serialize.bind(),
          serialize.execute(),
          serialize.parse({ text: "select 'a\\' as v" }),
          serialize.bind(),
          serialize.execute(),
          serialize.sync(),
        ],
        1,
      );
      const errs = errors(got);
      expect(errs.map((e) => e.code)).to.deep.equal(['42501']);
      expect(errs[0].message).to.contain('cannot follow an Execute in the same pipeline');
    });

    it('pipelined queries with non-ASCII text run in order once the server has answered', async () => {
      const got = await pipeline([serialize.query('select 1 as a'), serialize.query("select 'Müller' as name"), serialize.query('select 3 as c')], 3);
      expect(errors(got)).to.deep.equal([]);
      const rows = got.filter((m) => m.name === 'dataRow').map((m) => (m as unknown as { fields: string[] }).fields[0]);
      expect(rows).to.deep.equal(['1', 'Müller', '3']);
    });
  });

  describe('ordinary clients', () => {
    it('psql runs statements as before', async () => {
      const r = await psql(h.proxyEnv(), ['-A', '-t', '-c', 'select count(*) from items']);
      expect(r.stderr).to.equal('');
      expect(r.stdout.trim()).to.equal('1000');
    });

    it('the pg driver runs simple and prepared statements as before', async () => {
      const c = new pg.Client(h.clientConfig());
      await c.connect();
      try {
        expect((await c.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
        expect((await c.query({ name: 'p', text: 'select $1::int as v', values: [7] })).rows).to.deep.equal([{ v: 7 }]);
      } finally {
        await c.end();
      }
    });

    it('pgbench -S runs through the proxy in both protocols', async () => {
      await run('pgbench', ['-i', '-s', '1', '-q'], { env: h.cluster.env('agent_rw', AGENT_PASSWORD, 'payments') });
      for (const mode of ['prepared', 'simple']) {
        const { stdout } = await run('pgbench', ['-S', '-M', mode, '-c', '2', '-j', '1', '-t', '100', '-n'], { env: h.proxyEnv() });
        expect(stdout).to.contain('number of failed transactions: 0');
      }
    });
  });
});
