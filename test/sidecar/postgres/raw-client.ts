// A raw protocol client for the proxy tests: sends frontend messages built with
// pg-protocol (or hand-built bytes), collects the parsed backend messages.

import net from 'node:net';
import { serialize, parse as parseBackend } from 'pg-protocol';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';

export class RawClient {
  readonly messages: BackendMessage[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  private constructor(readonly sock: net.Socket) {
    void parseBackend(sock, (m) => {
      this.messages.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on('error', () => {});
  }

  /** Connects and, unless `startup` is false, logs in as the harness's agent; tests look at what follows. */
  static async connect(port: number, startup = true): Promise<RawClient> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const c = new RawClient(sock);
    if (startup) {
      sock.write(serialize.startup({ user: 'agent', database: 'payments' }));
      await c.until((m) => m.name === 'readyForQuery');
      c.messages.length = 0;
    }
    return c;
  }

  write(b: Buffer | Buffer[]): void {
    this.sock.write(Array.isArray(b) ? Buffer.concat(b) : b);
  }

  /** Waits for a message matching `pred` (counting from `from`) or the socket closing. */
  async until(pred: (m: BackendMessage) => boolean, from = 0, timeoutMs = 15_000): Promise<BackendMessage[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.slice(from).findIndex(pred);
      if (i >= 0) return this.messages.slice(from, from + i + 1);
      if (this.closed) return this.messages.slice(from);
      if (Date.now() > deadline) throw new Error(`timeout; got ${this.messages.slice(from).map((m) => m.name).join(',')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** Sends `msgs` and resolves with the answers up to the `n`-th ReadyForQuery after them. */
  async batch(msgs: Buffer[], n = 1): Promise<BackendMessage[][]> {
    const from = this.messages.length;
    this.write(msgs);
    const out: BackendMessage[][] = [];
    let at = from;
    for (let i = 0; i < n; i++) {
      const got = await this.until((m) => m.name === 'readyForQuery', at);
      out.push(got);
      at += got.length;
    }
    return out;
  }

  end(): void {
    this.sock.destroy();
  }
}

export const names = (msgs: BackendMessage[]): string[] => msgs.map((m) => m.name);
export const errorsOf = (msgs: BackendMessage[]): { code: string; message: string }[] =>
  msgs.filter((m) => m.name === 'error').map((m) => ({ code: (m as unknown as { code: string }).code, message: (m as unknown as { message: string }).message }));
export const rowsOf = (msgs: BackendMessage[]): (string | null)[][] => msgs.filter((m) => m.name === 'dataRow').map((m) => (m as unknown as { fields: (string | null)[] }).fields);
