#!/usr/bin/env bash
# `make fuzz`: schemathesis, every check (`--checks all`), against the API and the function as
# `make run` starts them, for FUZZ_SECONDS (300), with a fresh user's key.
#
#   make fuzz DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/fuzz
#
# The database is migrated first (SQLite in a temporary folder when DATABASE_URL is unset);
# stored images go to a temporary folder. The per-user rate limit is lifted so that uploads are
# tested past it. `DELETE /v1/users/me` is left out: it would erase the user whose key the run
# uses, and every later request would be a 401. The reports (JUnit, NDJSON) go to var/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
FUZZ_VENV=.venv-fuzz
FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
scratch=$(mktemp -d)
export API_PORT="${API_PORT:-8100}" FUNCTION_PORT="${FUNCTION_PORT:-8180}"
export DATABASE_URL="${DATABASE_URL:-sqlite+aiosqlite:///${scratch}/fuzz.db}"
export STORAGE_DIR="$scratch/media" RATE_LIMIT_GENERATIONS=1000000
# JSON lines: the API's access lines carry each answer's status in `httpRequest`, counted below.
export LOG_FORMAT=json
api="http://127.0.0.1:${API_PORT}"
mkdir -p var/fuzz

"$VENV/bin/alembic" -c api/alembic.ini upgrade head
bash scripts/run-local.sh >var/fuzz/servers.log 2>&1 &
servers=$!
cleanup() {
  kill -TERM "$servers" 2>/dev/null || true
  wait "$servers" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

for _ in $(seq 300); do
  curl -fs "$api/healthz" >/dev/null && curl -s "http://127.0.0.1:${FUNCTION_PORT}" >/dev/null &&
    break
  sleep 0.2
done
name="fuzz$(date +%s)"
key=$(curl -fsS -X POST "$api/v1/users" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$name\",\"email\":\"$name@example.com\"}" |
  "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')

status=0
"$FUZZ_VENV/bin/schemathesis" run "$api/openapi.json" \
  --checks all \
  --max-time "$FUZZ_SECONDS" \
  --header "Authorization: Bearer $key" \
  --exclude-operation-id delete_me_v1_users_me_delete \
  --report junit,ndjson --report-dir var/fuzz \
  --seed "${FUZZ_SEED:-1}" || status=$?
echo "5xx answers in the API's access log: $(grep -cE '"status": 5[0-9]{2}[,}]' var/fuzz/servers.log || true)"
exit "$status"
