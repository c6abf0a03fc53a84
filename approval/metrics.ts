// The approval service's metrics. Labels stay bounded: `result` is one of a fixed set.

import { counter, gauge, histogram } from '../core/metrics.js';

export type RequestResult = 'created' | 'reused' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';

export const approvalRequests = counter({
  name: 'agentgate_approval_requests_total',
  help: 'Approval requests by what happened to them: created, reused (an existing approval or pending request served the ask), approved, denied, expired, cancelled, used.',
  labelNames: ['result'] as const,
});

export const approvalPending = gauge({
  name: 'agentgate_approval_pending',
  help: 'Approval requests waiting for a decision (all replicas: counted in the shared store).',
});

export const approvalDecisionSeconds = histogram({
  name: 'agentgate_approval_decision_seconds',
  help: 'Time from a request being created to its final decision (approved or denied).',
  labelNames: ['result'] as const,
  buckets: [1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600],
});

export const approvalWebhookDeliveries = counter({
  name: 'agentgate_approval_webhook_deliveries_total',
  help: 'Notification webhook deliveries by outcome (delivered, failed after retries).',
  labelNames: ['outcome'] as const,
});
