// In-process change notification: a waiting long-poll wakes the moment a request
// changes, whether this replica changed it or another one did (PostgreSQL NOTIFY
// feeds `changed` too). Waiters re-read the store after waking, so a spurious or
// duplicate wake-up is harmless.

import { EventEmitter } from 'node:events';

export class Changes {
  private readonly ee = new EventEmitter();
  constructor() {
    this.ee.setMaxListeners(0);
  }

  changed(id: string): void {
    this.ee.emit(id);
  }

  /** Resolves true on the next change of `id`, false after `ms`, or false at once if `signal` aborts. */
  next(id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.ee.off(id, onChange);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onChange = () => done(true);
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), Math.max(0, ms));
      this.ee.on(id, onChange);
      if (signal?.aborted) return done(false);
      signal?.addEventListener('abort', onAbort);
    });
  }
}
