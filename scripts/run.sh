#!/usr/bin/env bash
# `make run`: development only. Migrate, seed the demo into make run's own database, then serve.
# With DATABASE_URL and REDIS_URL set it runs the whole stack (ASGI server, Celery worker, Celery beat)
# in the foreground; Ctrl-C stops all. Production runs the Procfile's commands instead (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PATH="$PWD/$BIN:$PATH"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p var

# A random secret per checkout, written once into the ignored local env file, readable by its owner
# only. core/settings.py reads the file, so the server, Celery and every manage.py command share it.
ENV_FILE="${DJANGO_ENV_FILE:-.env.local}"
if [[ "$ENV_FILE" != /dev/null ]] && ! grep -qs '^DJANGO_SECRET_KEY=.' "$ENV_FILE"; then
  (
    umask 077
    key="$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    {
      echo "# Written by make run (scripts/run.sh) for this checkout only. Never commit or copy it to a server."
      echo "DJANGO_SECRET_KEY=$key"
    } >>"$ENV_FILE"
  )
  echo "  Wrote a random DJANGO_SECRET_KEY to $ENV_FILE (mode 0600)."
fi
[[ "$ENV_FILE" == /dev/null ]] || chmod 600 "$ENV_FILE"
export DJANGO_ENV_FILE="$(realpath "$ENV_FILE")"
# Development: DEBUG on here and only here (everything else defaults to off).
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
# Log lines for a person reading a terminal; production writes one JSON object per line (docs/logs-and-traces.md).
export LOG_FORMAT="${LOG_FORMAT:-console}"

$BIN/python manage.py migrate --noinput -v 0
# The demo goes only into make run's own database, the SQLite file of the checkout (DATABASE_URL unset);
# seed_demo itself never touches an existing user nor a database that has transactions.
if [[ -z "${DATABASE_URL:-}" ]]; then
  $BIN/python manage.py seed_demo
else
  echo "  DATABASE_URL is set: not seeding demo data (run '$BIN/python manage.py seed_demo' on a database of your own)."
fi

echo
echo "  Ledgerpulse dashboard: http://$HOST:$PORT/dashboard/   (REST API under /api/, websocket at /ws/dashboard/)"
echo

# The Procfile's web: line, the one production runs (slow-client limits, graceful shutdown), with one
# worker process: embedded mode's in-memory channel layer lives in one process.
web_command="$(sed -n 's/^web: //p' Procfile)"
web() { HOST="$HOST" PORT="$PORT" WEB_CONCURRENCY=1 exec sh -c "$web_command"; }

if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
  echo "  Full stack (development): PostgreSQL + Redis, Celery worker and beat, uvicorn."
  pids=()
  cleanup() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
  trap cleanup INT TERM EXIT
  $BIN/celery -A celery_app worker --loglevel=warning --concurrency=2 & pids+=($!)
  $BIN/celery -A celery_app beat --loglevel=warning --schedule var/celerybeat-schedule & pids+=($!)
  (web) & pids+=($!)
  # Whichever stops first (or Ctrl-C) takes the others down with it.
  wait -n
else
  echo "  Embedded mode: SQLite, in-memory channel layer, projections run in-process after commit."
  web
fi
