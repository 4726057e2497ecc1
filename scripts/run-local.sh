#!/usr/bin/env bash
# `make run`: the function under functions-framework on :8080 and the API on :8000, wired
# together with local backends. Ctrl-C stops both.
#
# The function runs under a small supervisor: when it exits (a crash, kill -9, the OOM killer),
# a line on stderr says so and it is started again after a backoff, while the API keeps serving
# (it answers 503 upstream_unavailable for what needs the function). When the API exits, the
# function is stopped and this script exits with the API's status.
set -euo pipefail
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
  echo "run-local: needs bash >= 5.1 (wait -n on given jobs), not $BASH_VERSION" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
VENV=.venv
FUNCTION_PORT="${FUNCTION_PORT:-8080}"
API_PORT="${API_PORT:-8000}"
export FUNCTION_URL="${FUNCTION_URL:-http://127.0.0.1:${FUNCTION_PORT}}"
export MEDIA_BASE_URL="${MEDIA_BASE_URL:-http://127.0.0.1:${API_PORT}/media}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:${API_PORT}}"
# Log lines for a person when stdout is a terminal (`make run` at a prompt), one Cloud Logging
# JSON object each otherwise (piped to a file or a collector), unless LOG_FORMAT says which.
# Exported: the function reads it too; the API's uvicorn takes it through --log-config below.
if [[ -z ${LOG_FORMAT:-} ]]; then
  if [[ -t 1 ]]; then LOG_FORMAT=text; else LOG_FORMAT=json; fi
fi
export LOG_FORMAT

# Restarts wait 1 s, then twice as long each time up to 30 s (a function that cannot start does
# not spin), and 1 s again once it had stayed up for 60 s (a rare crash is retried at once).
RESTART_DELAY_MIN_S=1
RESTART_DELAY_MAX_S=30
STABLE_AFTER_S=60
# When stopping, what still runs after this long is killed: the API gives its background work
# SHUTDOWN_GRACE_S (10 s by default) to finish, gunicorn waits for its workers' requests.
STOP_GRACE_S=15

# Job control: every background job below gets a process group of its own, so one signal to
# the group reaches a server and every process it forked (gunicorn's master and its workers;
# a master killed with -9 would otherwise leave a worker behind, holding the port). The servers
# are thus outside the terminal's foreground group: Ctrl-C reaches this script (and make), not
# them, and the trap below stops them. (Without job control, background jobs of a script ignore
# SIGINT: Ctrl-C never reached the servers either way.)
set -m

say() { echo "run-local: $*" >&2; }

# "status 137 (SIGKILL)" for the exit status of a process killed by a signal.
describe() {
  local name
  if (($1 > 128)) && name=$(kill -l "$(($1 - 128))" 2>/dev/null); then
    echo "status $1 (SIG$name)"
  else
    echo "status $1"
  fi
}

running() { kill -0 "$1" 2>/dev/null; }

# signal_groups SIGNAL PGID...: each job's leader pid is its process group's id.
signal_groups() {
  local signal=$1 pgid
  shift
  for pgid in "$@"; do kill -"$signal" -- "-$pgid" 2>/dev/null || true; done
}

any_group_left() {
  local pgid
  for pgid in "$@"; do kill -0 -- "-$pgid" 2>/dev/null && return 0; done
  return 1
}

# Stops every job still running (the servers, a pending restart's sleep): SIGTERM to their
# groups, then SIGKILL to what is left after STOP_GRACE_S, or at once on a second Ctrl-C.
# Every job, not only the pids in variables: a signal may arrive between starting a server
# and recording its pid.
stop_all() {
  local groups=() deadline
  mapfile -t groups < <(jobs -p)
  ((${#groups[@]} > 0)) || return 0
  deadline=$((SECONDS + STOP_GRACE_S))
  trap 'deadline=0' INT TERM
  signal_groups TERM "${groups[@]}"
  while ((SECONDS < deadline)) && any_group_left "${groups[@]}"; do
    sleep 0.1 &
    wait "$!" 2>/dev/null || true
  done
  signal_groups KILL "${groups[@]}"
  wait 2>/dev/null || true
}

# Ctrl-C or SIGTERM: stop both, then die of the same signal so that make (or whatever ran
# this) sees an interrupted command.
on_signal() {
  trap - EXIT
  stop_all
  trap - "$1"
  kill -"$1" "$$"
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap stop_all EXIT # set -e or any other way out: leave nothing running

# `cmd &` forks and execs the server itself: $! is its pid and its process group's id (gunicorn's
# master for the function). stdin from /dev/null: with job control, a background job would
# otherwise share the terminal's.
start_function() {
  "$VENV/bin/functions-framework" --target generate_animal_avatar \
    --source cloud_functions/main.py --host 127.0.0.1 --port "$FUNCTION_PORT" </dev/null &
  function_pid=$!
  function_started=$SECONDS
}

start_function
# --log-config: the API's lines, uvicorn's too, in LOG_FORMAT (the path is relative to the
# repository, this script's working directory); the API writes its own access lines.
"$VENV/bin/uvicorn" api.main:create_app --factory --host 127.0.0.1 --port "$API_PORT" \
  --log-config api/observability/logging.json </dev/null &
api_pid=$!

echo "API      http://127.0.0.1:${API_PORT}  (docs: /docs)"
echo "function http://127.0.0.1:${FUNCTION_PORT}"

restart_delay=$RESTART_DELAY_MIN_S
backoff_pid= # the `sleep` before a restart; no function_pid meanwhile
while true; do
  # Until the API, the function or the backoff ends, or a trapped signal interrupts. Then the
  # checks below look at what is no longer running (`wait -n` forgets a job bash has already
  # reported). wait's stderr goes nowhere: bash would add a "Killed" line of its own.
  wait -n "$api_pid" ${function_pid:+"$function_pid"} ${backoff_pid:+"$backoff_pid"} \
    2>/dev/null || true

  if ! running "$api_pid"; then
    status=0
    wait "$api_pid" 2>/dev/null || status=$?
    say "the API exited with $(describe "$status"); stopping the function"
    trap - EXIT
    stop_all
    exit "$status"
  fi

  if [[ -n $function_pid ]] && ! running "$function_pid"; then
    status=0
    wait "$function_pid" 2>/dev/null || status=$?
    # Whatever the master left in its group (workers, when it was killed with -9) goes too,
    # or the new one could not bind the port.
    signal_groups KILL "$function_pid"
    function_pid=
    uptime=$((SECONDS - function_started))
    ((uptime < STABLE_AFTER_S)) || restart_delay=$RESTART_DELAY_MIN_S
    say "function exited with $(describe "$status") after ${uptime} s;" \
      "restarting in ${restart_delay} s"
    sleep "$restart_delay" &
    backoff_pid=$!
    restart_delay=$((restart_delay * 2))
    ((restart_delay <= RESTART_DELAY_MAX_S)) || restart_delay=$RESTART_DELAY_MAX_S
  fi

  if [[ -n $backoff_pid ]] && ! running "$backoff_pid"; then
    wait "$backoff_pid" 2>/dev/null || true
    backoff_pid=
    say "starting the function again"
    start_function
  fi
done
