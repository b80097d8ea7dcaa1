#!/usr/bin/env bash
# Fuzzes the orchestrator's API from its own OpenAPI document with
# schemathesis: zero 5xx responses and zero schema violations, or it fails.
#   scripts/fuzz-api.sh [MAX_EXAMPLES_PER_OPERATION]   (default 200: ~2,000 requests)
# Needs Postgres and NATS running and `pip install schemathesis`. Uses its own
# database and subject prefix, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-200}"
run="fuzz$$"
port=$((20000 + RANDOM % 20000))
bin="${CARGO_TARGET_DIR:-target}/debug/upshift"
cargo build --quiet --locked --bin upshift

export UPSHIFT_DATABASE__URL="postgres://postgres@127.0.0.1:5432/upshift_$run"
export UPSHIFT_NATS__PREFIX="$run"
export UPSHIFT_API__LISTEN="127.0.0.1:$port"
# No worker runs here: a valid chat waits out api.chat_wait_secs, then 504.
export UPSHIFT_API__CHAT_WAIT_SECS=1
log="$(mktemp)"
"$bin" orchestrator >"$log.out" 2>"$log" &
orch=$!
cleanup() {
  kill "$orch" 2>/dev/null || true
  wait "$orch" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS upshift_$run WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done

schemathesis run "http://127.0.0.1:$port/openapi.json" --exclude-tag openai \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" \
  --report-dir "$(mktemp -d)"
# The OpenAI-compatible door answers 504 by design when its job outlives
# the wait (and 502 when a job fails): documented 5xx, so its run checks
# that every status, content type and body is the documented one.
schemathesis run "http://127.0.0.1:$port/openapi.json" --include-tag openai \
  --checks status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" \
  --report-dir "$(mktemp -d)"
