// `agentgate mask` as a user runs it: the built CLI, stdin to stdout.

import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../cli/main.js');

function run(args: string[], input: Buffer | string | string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [cli, 'mask', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    if (Array.isArray(input)) {
      // Separate writes, so a PAN is cut across reads.
      let i = 0;
      const next = (): void => {
        if (i === input.length) {
          p.stdin.end();
          return;
        }
        p.stdin.write(input[i++], () => setTimeout(next, 20));
      };
      next();
    } else p.stdin.end(input);
  });
}

describe('agentgate mask (CLI)', () => {
  it('masks text from stdin to stdout', async () => {
    const r = await run([], 'order 7 card 4111 1111 1111 1111 ok\n');
    expect(r).to.deep.equal({ code: 0, stdout: 'order 7 card **** **** **** 1111 ok\n', stderr: '' });
  });

  it('masks a PAN cut between two writes to stdin', async () => {
    const r = await run([], ['card 4111 11', '11 1111 1111\n']);
    expect(r.stdout).to.equal('card **** **** **** 1111\n');
  });

  it('keeps bin and last four with --keep bin+last4', async () => {
    const r = await run(['--keep', 'bin+last4'], '5555555555554444');
    expect(r.stdout).to.equal('555555******4444');
  });

  it('masks JSON with --format json', async () => {
    const r = await run(['--format', 'json'], '{"pan":4111111111111111,"cvv":"123"}\n');
    expect(r).to.deep.equal({ code: 0, stdout: '{"pan":"************1111","cvv":"***"}\n', stderr: '' });
  });

  it('exits 1 with a clear message on invalid JSON', async () => {
    const r = await run(['--format', 'json'], '{"a": 4111111111111111,}');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal("agentgate mask: invalid JSON at line 1, byte 23: expected a string key, found '}'\n");
    expect(r.stdout).to.not.include('4111111111111111');
  });

  it('stops quietly when the reader goes away (agentgate mask | head)', async () => {
    const p = spawn(process.execPath, [cli, 'mask'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.once('data', () => p.stdout.destroy());
    const line = Buffer.from('card 4111 1111 1111 1111 and more text\n'.repeat(2000));
    const feed = (): void => {
      if (p.stdin.destroyed) return;
      p.stdin.write(line, (err) => (err ? undefined : setImmediate(feed)));
    };
    p.stdin.on('error', () => undefined);
    feed();
    const code = await new Promise((resolve) => p.on('close', resolve));
    expect({ code, stderr }).to.deep.equal({ code: 0, stderr: '' });
  });

  it('exits 2 with one line on a bad flag value', async () => {
    const r = await run(['--format', 'xml'], '');
    expect(r.code).to.equal(2);
    expect(r.stderr).to.equal("agentgate mask: --format must be 'text' or 'json', not 'xml' (see agentgate mask --help)\n");
  });

  it('exits 2 with one line on an unknown flag', async () => {
    const r = await run(['--nope'], '');
    expect(r.code).to.equal(2);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
  });
});
