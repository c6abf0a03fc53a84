// The ONE schema of the approval service, as ordered migrations. The same SQL runs
// on PostgreSQL (production, several replicas) and on PGlite (embedded default),
// so both backends behave the same by construction. Never edit a shipped
// migration: append a new one.

export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'approval requests and decisions',
    sql: `
create table agentgate_approval_requests (
  id              text primary key,
  state           text not null check (state in ('pending','approved','denied','expired','cancelled','used')),
  protocol        text not null check (protocol in ('postgres','kubernetes')),
  connection      text not null,
  operation       text not null,
  rule            text not null,
  justification   text,
  requester       jsonb not null,
  identity_key    text not null,
  pod_uid         text not null,
  mode            text not null check (mode in ('wait','defer')),
  scope           text not null check (scope in ('once','window')),
  window_minutes  integer not null,
  approver_groups jsonb not null,
  min_approvals   integer not null check (min_approvals >= 1),
  binding         text not null,
  fingerprint     text not null,
  created_at      timestamptz not null,
  expires_at      timestamptz not null,
  decided_at      timestamptz,
  valid_until     timestamptz,
  used_at         timestamptz,
  uses            integer not null default 0
);
create index agentgate_approval_requests_live on agentgate_approval_requests (state, expires_at);
create index agentgate_approval_requests_binding on agentgate_approval_requests (identity_key, binding);
create index agentgate_approval_requests_window on agentgate_approval_requests (identity_key, rule, fingerprint);
create index agentgate_approval_requests_pod on agentgate_approval_requests (pod_uid, created_at);
create table agentgate_approval_decisions (
  request_id text not null references agentgate_approval_requests (id) on delete cascade,
  approver   text not null,
  verdict    text not null check (verdict in ('approve','deny')),
  reason     text not null,
  at         timestamptz not null,
  primary key (request_id, approver)
);`,
  },
];

/** Advisory lock key that serialises migrations between replicas starting together. */
export const MIGRATION_LOCK = 7_415_006;
