// Serving certificate and key, reloaded when the files change, without a restart.
// An expired webhook certificate with failurePolicy: Fail blocks every opted-in
// pod in the cluster, so rotation (cert-manager, a Secret update) must take effect
// on its own. Files are polled: Secret volumes update through an atomic symlink
// swap that file watchers miss. A half-written pair (new cert, old key) is not
// applied; the old pair keeps serving until both files agree.

import { readFile, stat } from 'node:fs/promises';
import { X509Certificate, createHash } from 'node:crypto';
import tls from 'node:tls';
import type { Logger } from '../core/log.js';

export interface CertificatePair {
  cert: Buffer;
  key: Buffer;
  notAfter: Date;
  fingerprint: string;
}

/** Reads and checks a cert/key pair; throws with a message naming the file and the problem. */
export async function loadCertificatePair(certFile: string, keyFile: string): Promise<CertificatePair> {
  // One after the other, so that when both are unreadable the error names the certificate, every time.
  const cert = await readFile(certFile);
  const key = await readFile(keyFile);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`${certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`${keyFile}: does not match ${certFile} or is not a PEM private key (${(err as Error).message})`);
  }
  return { cert, key, notAfter: new Date(x509.validTo), fingerprint: x509.fingerprint256 };
}

export interface ReloaderOptions {
  certFile: string;
  keyFile: string;
  intervalMs?: number;
  log: Logger;
  onReload(pair: CertificatePair): void;
  onError?(err: Error): void;
}

export class CertificateReloader {
  private timer: NodeJS.Timeout | undefined;
  private lastStamp = '';
  private lastDigest = '';
  private running: Promise<void> | undefined;
  /** The file state that last failed to load: not retried (nor logged again) until the files change. */
  private failedStamp = '';

  constructor(private readonly opts: ReloaderOptions) {}

  /** Loads the pair once (throws if unusable), then polls for changes. */
  async start(): Promise<CertificatePair> {
    const pair = await loadCertificatePair(this.opts.certFile, this.opts.keyFile);
    this.lastStamp = await this.stamp();
    this.lastDigest = digest(pair);
    this.timer = setInterval(() => void this.check(), this.opts.intervalMs ?? 1000);
    this.timer.unref();
    return pair;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async stamp(): Promise<string> {
    const [a, b] = await Promise.all([stat(this.opts.certFile), stat(this.opts.keyFile)]);
    return `${a.ino}:${a.size}:${a.mtimeMs}|${b.ino}:${b.size}:${b.mtimeMs}`;
  }

  /**
   * One poll: reload when the files changed and form a valid pair. A poll already
   * running may have read the files before the latest change, so this one waits for
   * it and then looks again (reloadNow right after a rotation must see the rotation).
   */
  async check(): Promise<void> {
    while (this.running) await this.running;
    this.running = this.poll().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async poll(): Promise<void> {
    let s = '';
    try {
      s = await this.stamp();
      if (s === this.lastStamp || s === this.failedStamp) return;
      const pair = await loadCertificatePair(this.opts.certFile, this.opts.keyFile);
      this.lastStamp = s;
      const d = digest(pair);
      if (d === this.lastDigest) return;
      this.lastDigest = d;
      this.opts.onReload(pair);
    } catch (err) {
      // Keep serving the previous pair; retried when the files change again.
      this.failedStamp = s;
      this.opts.onError?.(err as Error);
    }
  }
}

function digest(p: CertificatePair): string {
  return createHash('sha256').update(p.cert).update('\0').update(p.key).digest('hex');
}
