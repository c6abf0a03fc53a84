// The policy in force, from a file that may change under a running process.
// Kubernetes updates a ConfigMap volume by writing a new timestamped directory,
// pointing a `..data_tmp` symlink at it and renaming that over `..data`; the file we
// were given is a symlink through `..data`. Watching the file itself would follow
// the old inode forever, so the directory is watched, every event re-resolves the
// path, and a short debounce lets a swap finish before we read. A slow poll of the
// resolved path catches what a watch can miss (some filesystems, editors' renames).

import { watch, statSync, realpathSync, readFileSync } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Policy, PolicySource } from './types.js';
import { parsePolicy } from './load.js';
import { FailClosedPolicy } from './engine.js';
import { countReload, setPolicyLoaded } from './metrics.js';
import { formatSourceError } from '../yaml/validate.js';
import type { SourceError } from '../yaml/validate.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';

const UNREADABLE = 'unreadable';

export interface FilePolicySourceOptions {
  /** Quiet time after the last change before reading (ms). */
  debounceMs?: number;
  /** Interval of the safety-net poll (ms); 0 turns it off. */
  pollMs?: number;
  /** Watch the directory for changes (default true); polling alone otherwise. */
  watch?: boolean;
  logger?: Logger;
}

export type ReloadListener = (result: { ok: boolean; policy: Policy; errors: SourceError[] }) => void;

export class FilePolicySource implements PolicySource {
  private policy: Policy;
  private loadedOnce = false;
  private lastDigest = '';
  private watcher?: FSWatcher;
  private poller?: NodeJS.Timeout;
  private timer?: NodeJS.Timeout;
  private readonly listeners: ReloadListener[] = [];
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private readonly watchDir: boolean;
  private started = false;

  constructor(readonly file: string, opts: FilePolicySourceOptions = {}) {
    this.log = opts.logger ?? createLogger('policy');
    this.debounceMs = opts.debounceMs ?? 100;
    this.pollMs = opts.pollMs ?? 5000;
    this.watchDir = opts.watch ?? true;
    this.policy = new FailClosedPolicy(`${file} has not been read yet`);
    this.reload();
  }

  current(): Policy {
    return this.policy;
  }

  /** True once a valid policy has been loaded (readiness). */
  get ready(): boolean {
    return this.loadedOnce;
  }

  onReload(listener: ReloadListener): void {
    this.listeners.push(listener);
  }

  /** Starts watching the file's directory. */
  start(): this {
    if (this.started) return this;
    this.started = true;
    const dir = path.dirname(path.resolve(this.file));
    if (this.watchDir) {
      try {
        this.watcher = watch(dir, { persistent: false }, () => this.schedule());
        this.watcher.on('error', (err) => this.log.warn({ err: err.message, dir }, 'policy directory watch failed; relying on polling'));
      } catch (err) {
        this.log.warn({ err: (err as Error).message, dir }, 'cannot watch policy directory; relying on polling');
      }
    }
    if (this.pollMs > 0) {
      this.poller = setInterval(() => this.schedule(), this.pollMs);
      this.poller.unref();
    }
    return this;
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.poller) clearInterval(this.poller);
    if (this.timer) clearTimeout(this.timer);
    this.poller = this.timer = undefined;
    this.started = false;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.debounceMs);
    this.timer.unref();
  }

  /**
   * Reads and validates the file now. Unchanged content is not a reload. Returns
   * whether the policy in force is now the file's content.
   */
  reload(): boolean {
    let text: string;
    let resolved = this.file;
    try {
      resolved = realpathSync(this.file);
      statSync(resolved);
      text = readFileSync(resolved, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (this.lastDigest === UNREADABLE) return false; // already reported
      return this.fail([{ file: this.file, line: 1, col: 1, message: `cannot read policy file: ${e.code === 'ENOENT' ? 'no such file' : e.message}` }], UNREADABLE);
    }
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest === this.lastDigest) return true;
    this.lastDigest = digest;
    const result = parsePolicy(text, this.file);
    if (!result.policy) return this.fail(result.errors, digest);
    this.policy = result.policy;
    this.loadedOnce = true;
    countReload('success');
    setPolicyLoaded(true);
    for (const w of result.warnings) this.log.warn({ file: this.file }, `policy warning: ${formatSourceError(w)}`);
    this.log.info({ file: this.file, resolved, policy: result.policy.name, rules: result.policy.rules.length, enforcement: result.policy.enforcement }, 'policy loaded');
    for (const l of this.listeners) l({ ok: true, policy: this.policy, errors: [] });
    return true;
  }

  private fail(errors: SourceError[], digest: string): boolean {
    // The same bad content (or a file still missing) is reported once, not per poll.
    this.lastDigest = digest;
    countReload('failure');
    const lines = errors.map(formatSourceError);
    if (this.loadedOnce) {
      this.log.error({ file: this.file, errors: lines, policy: this.policy.name }, 'policy reload failed; keeping the last good policy');
    } else {
      this.policy = new FailClosedPolicy(`${lines[0] ?? this.file}${lines.length > 1 ? ` and ${lines.length - 1} more error(s)` : ''}`);
      setPolicyLoaded(false);
      this.log.error({ file: this.file, errors: lines }, 'policy failed to load; denying every request');
    }
    for (const l of this.listeners) l({ ok: false, policy: this.policy, errors });
    return false;
  }
}
