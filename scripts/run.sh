#!/usr/bin/env bash
# `make run`: migrate, seed the demo, then serve. With DATABASE_URL and REDIS_URL set it runs
# the whole stack (ASGI server, Celery worker, Celery beat) in the foreground; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
BIN=.venv/bin
mkdir -p var

$BIN/python manage.py migrate --noinput -v 0
$BIN/python manage.py seed_demo

echo
echo "  Ledgerpulse dashboard: http://$HOST:$PORT/dashboard/   (REST API under /api/, websocket at /ws/dashboard/)"
echo

if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
  echo "  Full stack: PostgreSQL + Redis, Celery worker and beat, uvicorn."
  pids=()
  cleanup() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
  trap cleanup INT TERM EXIT
  $BIN/celery -A celery_app worker --loglevel=warning --concurrency=2 & pids+=($!)
  $BIN/celery -A celery_app beat --loglevel=warning --schedule var/celerybeat-schedule & pids+=($!)
  $BIN/uvicorn core.asgi:application --host "$HOST" --port "$PORT" --no-access-log & pids+=($!)
  # Whichever stops first (or Ctrl-C) takes the others down with it.
  wait -n
else
  echo "  Embedded mode: SQLite, in-memory channel layer, projections run in-process after commit."
  exec $BIN/uvicorn core.asgi:application --host "$HOST" --port "$PORT" --no-access-log
fi
