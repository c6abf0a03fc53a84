#!/usr/bin/env bash
# `make demo`: agentgate's local data path on embedded defaults, start to finish.
# A throw-away PostgreSQL holding card data, the sidecar in front of it, psql as the
# agent: reads come back masked, destruction is refused, every statement is in a
# hash-chained audit log that `agentgate audit verify` checks, and a tampered copy fails.
set -euo pipefail
cd "$(dirname "$0")/.."
AG="node dist/cli/main.js"
PGBIN=/usr/lib/postgresql/15/bin
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

work=$(mktemp -d /tmp/agentgate-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -f "$work/pg/postmaster.pid" ]]; then as_pg "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# initdb refuses to run as root: the cluster belongs to the postgres user.
if [[ $(id -u) -eq 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; chown postgres "$work"; else as_pg() { "$@"; }; fi

say "1. Policy: what agents in namespace payments may do"
run $AG policy check -f examples/policies/payments.yaml
run $AG policy explain -f examples/policies/payments.yaml --subject system:serviceaccount:payments:agent \
  --kube "DELETE /api/v1/namespaces/payments/secrets/keys" | sed -n '/^decision/,/^rule/p'
run $AG policy explain -f examples/policies/payments.yaml --subject system:serviceaccount:payments:agent \
  --sql "WITH d AS (DELETE FROM orders) SELECT * FROM cards" --connection payments | sed -n '/^overall/p'

say "2. Masking: card numbers never leave unmasked"
printf 'refund to 4111 1111 1111 1111, ref 2024-0001\n' | run $AG mask
printf '{"pan":"5500-0000-0000-0004","cvv":"123","amount":42}\n' | run $AG mask --format json
echo

say "3. A throw-away PostgreSQL with card data (SCRAM passwords)"
pgport=$(free_port)
echo 'demo-superuser' > "$work/su.pw"; chmod 644 "$work/su.pw"
as_pg "$PGBIN/initdb" -D "$work/pg" -U postgres --auth=scram-sha-256 --pwfile="$work/su.pw" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pgport -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work" start >/dev/null
export PGPASSWORD=demo-superuser
psql -q -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE agent_rw LOGIN PASSWORD 'real-db-password';
CREATE DATABASE payments OWNER agent_rw;
\c payments
SET ROLE agent_rw;
CREATE TABLE cards (id int PRIMARY KEY, holder text, pan text, cvv text, meta jsonb);
INSERT INTO cards VALUES
  (1, 'Ada', '4111 1111 1111 1111', '123', '{"backup_pan": "5500000000000004"}'),
  (2, 'Alan', '378282246310005', '4567', '{"note": "no card here"}');
CREATE TABLE orders (id int, card_id int, amount numeric);
INSERT INTO orders VALUES (1, 1, 10), (2, 2, 20);
SQL
unset PGPASSWORD
echo "database 'payments' on 127.0.0.1:$pgport; the real password is only in the sidecar's secret file"

say "4. The approval service (embedded storage) and a stand-in identity provider"
# examples/demo-idp.mjs signs a pod-bound service-account token for the sidecar and an OIDC token
# for the approver alice (group payments-oncall); in a cluster these come from the kubelet and your IdP.
node examples/demo-idp.mjs "$work" > "$work/idp.url" &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$work/idp.url" ]] && break; sleep 0.1; done
approval_port=$(free_port)
cat > "$work/approval.yaml" <<YAML
listen: 127.0.0.1:$approval_port
metrics: false
approvers: { issuer: "$(cat "$work/idp.url")", audience: agentgate-approvals, groupsClaim: groups }
sidecars: { issuer: https://kubernetes.default.svc.cluster.local, jwksFile: ./sidecar-jwks.json }
audit: { file: ./approval-audit.jsonl }
YAML
AGENTGATE_LOG_LEVEL=warn $AG approval --config "$work/approval.yaml" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$approval_port/readyz" >/dev/null && break; sleep 0.1; done
echo "approval service on 127.0.0.1:$approval_port"
approvals() { $AG approvals "$@" --server "http://127.0.0.1:$approval_port" --token-file "$work/alice.token"; }

say "5. The sidecar: the agent's only way to the database (127.0.0.1, trust on loopback)"
printf 'real-db-password' > "$work/db-password"
run $AG audit keygen --out "$work/keys"
proxy=$(free_port); health=$(free_port); metrics=$(free_port)
cat > "$work/sidecar.yaml" <<YAML
postgres:
  - name: payments
    listen: 127.0.0.1:$proxy
    upstream: { host: 127.0.0.1, port: $pgport, database: payments, user: agent_rw, passwordFile: ./db-password }
policy: { file: $PWD/examples/policies/payments.yaml }
audit: { file: ./audit.jsonl, signingKeyFile: ./keys/audit-signing.key.pem }
approval: { url: "http://127.0.0.1:$approval_port", tokenFile: ./sidecar.token }
health: { listen: 127.0.0.1:$health }
metrics: { listen: 127.0.0.1:$metrics }
YAML
AGENTGATE_POD_NAMESPACE=payments AGENTGATE_POD_NAME=agent-0 AGENTGATE_POD_UID=demo \
AGENTGATE_SERVICE_ACCOUNT=agent AGENTGATE_LOG_LEVEL=warn \
  $AG sidecar --config "$work/sidecar.yaml" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$health/healthz/ready" >/dev/null && break; sleep 0.1; done
echo "sidecar ready on 127.0.0.1:$proxy"
agent() { psql -h 127.0.0.1 -p "$proxy" -U agent -d payments -X -v ON_ERROR_STOP=0 "$@"; }

say "6. The agent reads cards: PANs masked in text and JSON columns, cvv column starred"
run agent -c "SELECT id, holder, pan, cvv, meta FROM cards ORDER BY id"
say "7. The agent tries to destroy data: refused with SQLSTATE 42501, connection stays usable"
run agent -c "DROP TABLE cards" -c "SELECT count(*) AS cards_still_there FROM cards" 2>&1 || true
say "8. A statement needing a human approver: held until alice approves"
pending_id() {
  for _ in $(seq 1 100); do
    id=$(approvals list --state pending -o json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);const a=Array.isArray(j)?j:(j.items??j.approvals??[]);process.stdout.write(a[0]?.id??"")}catch{}})')
    [[ -n "$id" ]] && { echo "$id"; return; }
    sleep 0.2
  done
}
echo '$ agent -c "UPDATE orders SET amount = 0 WHERE id = 1"   (in the background: it waits)'
agent -c "UPDATE orders SET amount = 0 WHERE id = 1" > "$work/update.out" 2>&1 &
held=$!
id=$(pending_id)
run approvals list --state pending
run approvals approve "$id" --reason "OPS-42: refund the test order"
wait "$held" || true
cat "$work/update.out"
say "9. The same kind of statement, denied by the approver"
echo '$ agent -c "UPDATE orders SET amount = 0 WHERE id = 2"   (in the background: it waits)'
agent -c "UPDATE orders SET amount = 0 WHERE id = 2" > "$work/update2.out" 2>&1 &
held=$!
id=$(pending_id)
run approvals deny "$id" --reason "not during the payment freeze"
wait "$held" || true
cat "$work/update2.out"
say "10. SQL that does not parse is refused with PostgreSQL's own answer"
run agent -c "SELEC 1" 2>&1 || true

say "11. Metrics"
curl -s "http://127.0.0.1:$metrics/metrics" | grep -E '^agentgate_(policy_decisions_total|pans_masked_total|postgres_statements_total)' | head -8 || true

kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
say "12. The audit trail: every statement, masked, hash-chained"
run tail -n 3 "$work/audit.jsonl" | cut -c1-400
if grep -q '4111 1111 1111 1111\|5500000000000004\|378282246310005' "$work/audit.jsonl"; then echo "FAIL: a raw PAN reached the audit log"; exit 1; else echo "no raw PAN in the audit log"; fi
run $AG audit verify "$work/audit.jsonl" --key "$work/keys/audit-signing.pub.pem"
say "13. Someone edits one event after the fact: verify points at it"
n=$(grep -n '"action":"deny"' "$work/audit.jsonl" | head -1 | cut -d: -f1)
echo "(turning the denied DROP on line $n into an allow)"
sed "${n}s/\"action\":\"deny\"/\"action\":\"allow\"/" "$work/audit.jsonl" > "$work/tampered.jsonl"
run $AG audit verify "$work/tampered.jsonl" --key "$work/keys/audit-signing.pub.pem" || echo "(exit $?: tampering detected)"
say "done"
