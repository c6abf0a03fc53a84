// Fail closed on the audit trail: while the sink reports it cannot record (disk full,
// write error, backlog over its bound) or an append just failed, requests are refused.
// The sink recovers by itself (core/audit/writer.ts); a refused request tries an
// append of its own refusal, so a failure seen only by a throwing append clears too.

import type { AuditEventInput, AuditHealth, AuditRecord, AuditSink } from '../../core/audit/types.js';
import type { Logger } from '../../core/log.js';

export class AuditGate implements AuditSink {
  private failure: string | undefined;
  private refusing = false;

  constructor(private readonly sink: AuditSink, private readonly log: Logger) {}

  /** Why the trail is unavailable, or undefined while it works. */
  get broken(): string | undefined {
    const h = this.sink.health();
    const reason = h.ok ? this.failure : h.reason;
    this.note(reason);
    return reason;
  }

  health(): AuditHealth {
    const reason = this.broken;
    return reason === undefined ? { ok: true } : { ok: false, reason };
  }

  append(event: AuditEventInput): AuditRecord {
    try {
      const r = this.sink.append(event);
      this.failure = undefined;
      return r;
    } catch (err) {
      this.failure = (err as Error).message;
      this.note(this.failure);
      throw err;
    }
  }

  flush(): Promise<void> {
    return this.sink.flush();
  }

  close(): Promise<void> {
    return this.sink.close();
  }

  private note(reason: string | undefined): void {
    if (reason !== undefined && !this.refusing) this.log.error({ err: reason }, 'audit trail unavailable: kubernetes requests are refused until it recovers');
    else if (reason === undefined && this.refusing) this.log.info('audit trail writable again: kubernetes requests are accepted');
    this.refusing = reason !== undefined;
  }
}
