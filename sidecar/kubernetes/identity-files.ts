// The files an unmodified in-cluster client reads: `token`, `ca.crt`, `namespace`.
// Each is replaced atomically (write to a temp name in the same directory, then
// rename), so a client never reads half a token. The token rotates on a timer and
// the previous one stays valid for a grace period, as kubelet does for projected
// service-account tokens, so a client that cached it keeps working until it re-reads.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

export async function writeAtomic(dir: string, name: string, content: string, mode = 0o644): Promise<void> {
  const tmp = path.join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(tmp, content, { mode });
  await rename(tmp, path.join(dir, name));
}

/** A bearer token that only this sidecar accepts: 256 bits, URL-safe. */
export function newLocalToken(): string {
  return `agentgate.${randomBytes(32).toString('base64url')}`;
}

interface HeldToken {
  value: Buffer;
  /** ms epoch after which it is no longer accepted (Infinity while current). */
  until: number;
}

export interface LocalTokensOptions {
  dir: string;
  rotationSeconds: number;
  graceSeconds: number;
  onRotate?: (error?: Error) => void;
  now?: () => number;
}

/** Holds the current and previous local tokens, rotates them and writes `token`. */
export class LocalTokens {
  private tokens: HeldToken[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly opts: LocalTokensOptions) {
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    await this.rotate();
    this.timer = setInterval(() => {
      this.rotate().then(() => this.opts.onRotate?.(), (err: Error) => this.opts.onRotate?.(err));
    }, this.opts.rotationSeconds * 1000);
    this.timer.unref();
  }

  /** Issues a new token, writes it, and keeps the previous one for the grace period. */
  async rotate(): Promise<string> {
    const token = newLocalToken();
    // Write first: a token is only accepted once a client could have read it.
    await writeAtomic(this.opts.dir, 'token', token, 0o644);
    const t = this.now();
    for (const held of this.tokens) if (held.until === Infinity) held.until = t + this.opts.graceSeconds * 1000;
    this.tokens = this.tokens.filter((h) => h.until > t);
    this.tokens.push({ value: Buffer.from(token), until: Infinity });
    return token;
  }

  /** Constant-time comparison against every token still valid. */
  accepts(presented: string): boolean {
    const p = Buffer.from(presented);
    const t = this.now();
    let ok = false;
    for (const held of this.tokens) {
      if (held.until <= t || held.value.length !== p.length) continue;
      if (timingSafeEqual(held.value, p)) ok = true;
    }
    return ok;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** Writes `ca.crt` and `namespace` (the token is LocalTokens' job). */
export async function writeIdentityFiles(dir: string, caPem: string, namespace: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeAtomic(dir, 'ca.crt', caPem);
  await writeAtomic(dir, 'namespace', namespace);
}
