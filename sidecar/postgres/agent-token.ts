// `token` client authentication against a token file someone else rotates: the file
// only ever holds the current token, but an agent may have read the previous one a
// moment before the rotation. Like the Kubernetes proxy's own tokens (and kubelet's
// projected tokens), the previous token stays valid for a grace period after the
// sidecar first sees the file change. The file is read on every login and every
// two seconds in between, so a rotation between two logins is not missed.
// (When the token file is the one the Kubernetes proxy itself writes, run.ts asks
// that proxy instead: it knows exactly when it rotated.)

import fs from 'node:fs';
import { timingSafeEqual } from 'node:crypto';

interface Held {
  value: Buffer;
  /** ms epoch after which it is refused (Infinity while current). */
  until: number;
}

export class RotatingTokenFile {
  private held: Held[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly file: string,
    private readonly graceSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts watching for rotations between logins (every `periodMs`). */
  start(periodMs = 2000): this {
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), periodMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** True for the current token, and the previous ones within their grace period. */
  async accepts(presented: string): Promise<boolean> {
    await this.refresh().catch(() => undefined);
    const p = Buffer.from(presented);
    const t = this.now();
    let ok = false;
    for (const h of this.held) {
      if (h.until <= t || h.value.length !== p.length || h.value.length === 0) continue;
      if (timingSafeEqual(h.value, p)) ok = true;
    }
    return ok;
  }

  private async refresh(): Promise<void> {
    let value: string;
    try {
      // Read whole each time (a few hundred bytes): a same-size rewrite within one mtime tick is still seen.
      value = (await fs.promises.readFile(this.file, 'utf8')).trim();
    } catch {
      // A missing file ends the current token's life as a rotation would.
      this.rotateTo(undefined);
      return;
    }
    this.rotateTo(value);
  }

  private rotateTo(value: string | undefined): void {
    const t = this.now();
    const current = this.held.find((h) => h.until === Infinity);
    if (value !== undefined && current && current.value.equals(Buffer.from(value))) return;
    for (const h of this.held) if (h.until === Infinity) h.until = t + this.graceSeconds * 1000;
    this.held = this.held.filter((h) => h.until > t);
    if (value) this.held.push({ value: Buffer.from(value), until: Infinity });
  }
}
