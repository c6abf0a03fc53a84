// PostgreSQL proxy metrics. Labels stay bounded: the connection name from the
// config, the decision action, a direction, a short failure reason.

import { counter, gauge, histogram, LATENCY_BUCKETS } from '../../core/metrics.js';

export const statements = counter({
  name: 'agentgate_pg_statements_total',
  help: 'SQL statements (simple queries, Parse and Execute) by connection and decision action.',
  labelNames: ['connection', 'decision'] as const,
});

export const statementDuration = histogram({
  name: 'agentgate_pg_statement_duration_seconds',
  help: 'Time from a statement reaching the proxy to its last response byte leaving it.',
  labelNames: ['connection'] as const,
  buckets: LATENCY_BUCKETS,
});

export const activeClients = gauge({
  name: 'agentgate_pg_client_connections',
  help: 'Client connections currently open, by connection.',
  labelNames: ['connection'] as const,
});

export const upstreamConnectErrors = counter({
  name: 'agentgate_pg_upstream_connect_errors_total',
  help: 'Failed upstream connection attempts by connection and reason (connect, tls, auth, protocol, server).',
  labelNames: ['connection', 'reason'] as const,
});

export const bytes = counter({
  name: 'agentgate_pg_bytes_total',
  help: 'Bytes relayed, by connection and direction (client_to_server, server_to_client).',
  labelNames: ['connection', 'direction'] as const,
});

export const protocolViolations = counter({
  name: 'agentgate_pg_protocol_violations_total',
  help: 'Client connections closed for malformed or oversized protocol messages.',
  labelNames: ['connection'] as const,
});

export const approvalHolds = counter({
  name: 'agentgate_pg_approval_holds_total',
  help: 'Statements an approve rule sent to the approval service, by connection and result (approved, denied, expired, timeout, cancelled, deferred, unavailable).',
  labelNames: ['connection', 'result'] as const,
});

export const approvalWait = histogram({
  name: 'agentgate_pg_approval_wait_seconds',
  help: 'How long statements were held for a human decision, by connection.',
  labelNames: ['connection'] as const,
  buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900],
});

/** Children bound once per listener, so the hot path does no label lookups. */
export function boundMetrics(connection: string) {
  return {
    allowed: statements.labels(connection, 'allow'),
    denied: statements.labels(connection, 'deny'),
    approve: statements.labels(connection, 'approve'),
    duration: statementDuration.labels(connection),
    active: activeClients.labels(connection),
    bytesIn: bytes.labels(connection, 'client_to_server'),
    bytesOut: bytes.labels(connection, 'server_to_client'),
    violations: protocolViolations.labels(connection),
    connectError: (reason: string) => upstreamConnectErrors.labels(connection, reason).inc(),
    approvalHold: (result: string, seconds: number) => {
      approvalHolds.labels(connection, result).inc();
      approvalWait.labels(connection).observe(seconds);
    },
  };
}
export type BoundMetrics = ReturnType<typeof boundMetrics>;

export const startupRefusals = counter({
  name: 'agentgate_pg_connections_refused_total',
  help: 'Client connections ended before their session started, by connection and reason (protocol, tls-required, tls-handshake, setting, policy, authentication, upstream, masking-setup, timeout).',
  labelNames: ['connection', 'reason'] as const,
});
