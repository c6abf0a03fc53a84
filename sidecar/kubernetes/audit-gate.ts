// Fail closed on the audit trail: once an append fails (disk full, file gone, backlog
// over its bound), requests are refused until an append succeeds again. Each refused
// request tries an append of its own refusal, which is how recovery is noticed.

import type { AuditEventInput, AuditRecord, AuditSink } from '../../core/audit/types.js';
import type { Logger } from '../../core/log.js';

export class AuditGate implements AuditSink {
  private failure: string | undefined;

  constructor(private readonly sink: AuditSink, private readonly log: Logger) {}

  /** Why the trail is unavailable, or undefined while it works. */
  get broken(): string | undefined {
    return this.failure;
  }

  append(event: AuditEventInput): AuditRecord {
    try {
      const r = this.sink.append(event);
      if (this.failure) this.log.info('audit trail writable again: kubernetes requests are accepted');
      this.failure = undefined;
      return r;
    } catch (err) {
      if (!this.failure) this.log.error({ err: (err as Error).message }, 'audit append failed: kubernetes requests are refused until the audit trail recovers');
      this.failure = (err as Error).message;
      throw err;
    }
  }

  flush(): Promise<void> {
    return this.sink.flush();
  }

  close(): Promise<void> {
    return this.sink.close();
  }
}
