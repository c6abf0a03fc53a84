import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chain, lineOf, tempDir, writeLines } from './fixture.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../cli/main.js');

function agentgate(args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('agentgate audit (CLI)', () => {
  let dir: string;
  let cleanup: () => void;
  let file: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    file = path.join(dir, 'audit.log');
  });
  afterEach(() => cleanup());

  it('verify prints a one-line summary and exits 0 for an intact chain', async () => {
    writeLines(file, chain(1, 4).map(lineOf));
    expect(await agentgate(['audit', 'verify', file])).to.deep.equal({ code: 0, stdout: 'ok: 4 events, chain intact, no checkpoint\n', stderr: '' });
  });

  it('verify prints the first break with file and line and exits 1', async () => {
    const recs = chain(1, 4);
    writeLines(file, [recs[0], recs[2], recs[3]].map(lineOf));
    expect(await agentgate(['audit', 'verify', file])).to.deep.equal({ code: 1, stdout: `missing: seq 2 is missing before ${file}:2\n`, stderr: '' });
  });

  it('verify checks a rotated series given as several files', async () => {
    const recs = chain(1, 6, undefined, [3]);
    const a = writeLines(path.join(dir, 'audit.log.000000000002'), recs.slice(0, 2).map(lineOf));
    writeLines(file, recs.slice(2).map(lineOf));
    expect((await agentgate(['audit', 'verify', a, file])).stdout).to.equal('ok: 6 events, chain intact, no checkpoint\n');
    expect(await agentgate(['audit', 'verify', file, a])).to.deep.equal({
      code: 1,
      stdout: `reordered: ${a}:1 has seq 1 after seq 6 at ${file}:4\n`,
      stderr: `warning: ${file}:1 starts at seq 3: the events before it are not in the files given\n`,
    });
  });

  it('verify exits 1 for a file that does not exist', async () => {
    const missing = path.join(dir, 'nope.log');
    expect(await agentgate(['audit', 'verify', missing])).to.deep.equal({ code: 1, stdout: `missing: cannot read ${missing} (ENOENT)\n`, stderr: '' });
  });

  it('verify --help prints the usage and exits 0', async () => {
    const r = await agentgate(['audit', 'verify', '--help']);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(/^Usage:\n {2}agentgate audit verify FILE\.\.\. \[--key PUBKEY\]/);
  });

  it('a bad flag exits 2 with one line', async () => {
    expect(await agentgate(['audit', 'verify', '--bogus', file])).to.deep.equal({
      code: 2,
      stdout: '',
      stderr: "agentgate audit: Unknown option '--bogus' (see agentgate audit --help)\n",
    });
  });

  it('verify without a file, and an unknown subcommand, exit 2', async () => {
    expect(await agentgate(['audit', 'verify'])).to.deep.equal({
      code: 2,
      stdout: '',
      stderr: 'agentgate audit: missing FILE (the audit files to verify) (see agentgate audit --help)\n',
    });
    expect((await agentgate(['audit', 'check'])).stderr).to.equal(
      "agentgate audit: unknown subcommand 'check': use verify, keygen or append (see agentgate audit --help)\n",
    );
  });

  it('verify --key with an unreadable key file exits 2', async () => {
    writeLines(file, chain(1, 1).map(lineOf));
    const key = path.join(dir, 'none.pem');
    expect(await agentgate(['audit', 'verify', file, '--key', key])).to.deep.equal({
      code: 2,
      stdout: '',
      stderr: `agentgate audit: --key ${key}: cannot read key file: ENOENT (see agentgate audit --help)\n`,
    });
  });

  it('keygen writes a key pair, the private key with mode 0600, and append + verify --key use it end to end', async () => {
    const keys = path.join(dir, 'keys');
    const gen = await agentgate(['audit', 'keygen', '--out', keys]);
    expect(gen.code).to.equal(0);
    const kid = /key id: {6}(\S+)\n$/.exec(gen.stdout)?.[1];
    expect(gen.stdout).to.equal(
      `private key: ${keys}/audit-signing.key.pem (mode 0600, for the writer)\npublic key:  ${keys}/audit-signing.pub.pem (for audit verify --key)\nkey id:      ${kid}\n`,
    );
    expect(statSync(`${keys}/audit-signing.key.pem`).mode & 0o777).to.equal(0o600);
    expect(readFileSync(`${keys}/audit-signing.pub.pem`, 'utf8')).to.match(/^-----BEGIN PUBLIC KEY-----\n/);

    const events = [
      { protocol: 'postgres', connection: 'payments', statement: "select * from cards where pan = '4111111111111111'" },
      { protocol: 'kubernetes', verb: 'get', requestURI: '/api/v1/namespaces/payments/secrets/card-5555555555554444' },
    ];
    const app = await agentgate(['audit', 'append', '-f', file, '--key', `${keys}/audit-signing.key.pem`], events.map((e) => JSON.stringify(e)).join('\n'));
    expect(app).to.deep.equal({ code: 0, stdout: '', stderr: `appended 2 events to ${file}, chain at seq 3\n` });
    const text = readFileSync(file, 'utf8');
    expect(text).not.to.include('4111111111111111');
    expect(text).not.to.include('5555555555554444');
    expect(text).to.include("pan = '************1111'");

    expect(await agentgate(['audit', 'verify', file, '--key', `${keys}/audit-signing.pub.pem`])).to.deep.equal({
      code: 0,
      stdout: `ok: 3 events, chain intact, last checkpoint seq 2 signed by ${kid}\n`,
      stderr: '',
    });

    // Cut the last record (the checkpoint) and one event: the side file still names seq 2.
    writeFileSync(file, text.split('\n').slice(0, 1).map((l) => `${l}\n`).join(''));
    const cut = await agentgate(['audit', 'verify', file, '--key', `${keys}/audit-signing.pub.pem`]);
    expect(cut.code).to.equal(1);
    expect(cut.stdout).to.match(
      new RegExp(`^truncated: checkpoint ${file}\\.checkpoints:1 \\(signed \\S+\\) covers seq 2, but the files end at seq 1 \\(${file}:1\\): 1 event is missing from the tail\\n$`),
    );

    const again = await agentgate(['audit', 'keygen', '--out', keys]);
    expect(again).to.deep.equal({ code: 1, stdout: '', stderr: `agentgate audit keygen: ${keys}/audit-signing.key.pem: already exists (use --force to replace it)\n` });
  });

  it('append -f - writes the chain to stdout, and the captured stream verifies', async () => {
    const r = await agentgate(['audit', 'append', '-f', '-'], '{"statement":"a"}\n{"statement":"b"}\n');
    expect(r.code).to.equal(0);
    expect(r.stderr).to.equal('appended 2 events to -, chain at seq 2\n');
    writeFileSync(file, r.stdout);
    expect((await agentgate(['audit', 'verify', file])).stdout).to.equal('ok: 2 events, chain intact, no checkpoint\n');
  });

  it('append -f - --key keeps the checkpoints in the stream, and verify --key checks them', async () => {
    const keys = path.join(dir, 'keys');
    await agentgate(['audit', 'keygen', '--out', keys]);
    const r = await agentgate(['audit', 'append', '-f', '-', '--key', `${keys}/audit-signing.key.pem`], '{"statement":"a"}\n');
    expect(r.stderr).to.equal('appended 1 event to -, chain at seq 2\n');
    writeFileSync(file, r.stdout);
    const v = await agentgate(['audit', 'verify', file, '--key', `${keys}/audit-signing.pub.pem`]);
    expect(v.code).to.equal(0);
    expect(v.stdout).to.match(/^ok: 2 events, chain intact, last checkpoint seq 1 signed by \S+\n$/);
  });

  it('append stops at the first line that is not JSON, keeping the events before it', async () => {
    const r = await agentgate(['audit', 'append', '-f', file], '{"statement":"a"}\n{oops\n{"statement":"c"}\n');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^agentgate audit append: stdin:2: not valid JSON \(.*\); the 1 events before it were appended\n$/);
    expect((await agentgate(['audit', 'verify', file])).stdout).to.equal('ok: 1 event, chain intact, no checkpoint\n');
  });
});
