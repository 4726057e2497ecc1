#!/usr/bin/env bash
# `make run`: the function under functions-framework on :8080 and the API on :8000, wired
# together with local backends. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
FUNCTION_PORT="${FUNCTION_PORT:-8080}"
API_PORT="${API_PORT:-8000}"
export FUNCTION_URL="${FUNCTION_URL:-http://127.0.0.1:${FUNCTION_PORT}}"
export MEDIA_BASE_URL="${MEDIA_BASE_URL:-http://127.0.0.1:${API_PORT}/media}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:${API_PORT}}"

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# `exec` so that $! is the server itself (gunicorn's master for the function), which then gets
# the TERM; background jobs of a script ignore SIGINT, so Ctrl-C alone would not reach it.
(exec "$VENV/bin/functions-framework" --target generate_animal_avatar \
  --source cloud_functions/main.py --host 127.0.0.1 --port "$FUNCTION_PORT") &
pids+=($!)
(exec "$VENV/bin/uvicorn" api.main:create_app --factory --host 127.0.0.1 --port "$API_PORT") &
pids+=($!)

echo "API      http://127.0.0.1:${API_PORT}  (docs: /docs)"
echo "function http://127.0.0.1:${FUNCTION_PORT}"
wait -n "${pids[@]}"
