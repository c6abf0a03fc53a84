// Audit trail metrics on the shared registry. No labels beyond the failing
// operation, so cardinality stays fixed.

import { counter, histogram } from '../metrics.js';

export const auditEventsWritten = counter({
  name: 'agentgate_audit_events_total',
  help: 'Audit records appended to the chain (including system and checkpoint records).',
});

export const auditBytesWritten = counter({
  name: 'agentgate_audit_bytes_total',
  help: 'Bytes of audit records handed to the audit destination.',
});

export const auditErrors = counter({
  name: 'agentgate_audit_errors_total',
  help: 'Audit trail failures by operation: write, fsync, checkpoint, backlog (append refused while the disk catches up). A write or fsync failure stops the sink (fail closed).',
  labelNames: ['op'] as const,
});
for (const op of ['write', 'fsync', 'checkpoint', 'backlog']) auditErrors.inc({ op }, 0);

export const auditCheckpoints = counter({
  name: 'agentgate_audit_checkpoints_total',
  help: 'Signed audit checkpoints written.',
});

export const auditFsyncSeconds = histogram({
  name: 'agentgate_audit_fsync_seconds',
  help: 'Time to write out and fsync a batch of audit records.',
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
});
