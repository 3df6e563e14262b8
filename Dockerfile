# syntax=docker/dockerfile:1
# Ledgerpulse's one image for every process: `web`, `worker` and `beat` name a line of the Procfile,
# which scripts/procfile.sh runs (docs/deployment.md). Only the runtime requirements are installed;
# the test tools (requirements-test.txt) never enter the image. The suite parses this file
# (tests/deploy/test_files.py): Docker is not needed to check it.

# --- build: a virtualenv with the pinned runtime requirements ------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# --no-deps: every transitive dependency is pinned in the file, so nothing unpinned can slip in;
# pip check proves the pins are complete and consistent.
RUN /opt/venv/bin/pip install --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/pip check

# --- runtime: the virtualenv, the code, a user without privileges -------------------------------------
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 ledgerpulse \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ledgerpulse
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=core.settings \
    DJANGO_ENV_FILE=/dev/null \
    DJANGO_STATIC_ROOT=/app/static-root
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# .dockerignore lets in only the runtime's files: no tests, no .env.local, no virtualenv.
COPY . /app
# Static files collected once, owned by root: the processes only read them (whitenoise serves them).
# The key exists for this one command: the settings refuse to load without one.
RUN DJANGO_SECRET_KEY=collectstatic-at-build-time-only python manage.py collectstatic --noinput -v 0
USER 10001:10001
EXPOSE 8000
# Names a Procfile line: `web` (the default), `worker` or `beat`; extra arguments are appended to it.
ENTRYPOINT ["/app/scripts/procfile.sh"]
CMD ["web"]
