"""Test settings: the project's settings on PostgreSQL, with an in-process layer and eager tasks
for unit tests. End-to-end tests start real processes with core.settings and real Redis."""
import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-0123456789abcdef0123456789")
os.environ.setdefault("DJANGO_DEBUG", "false")
# In-process tests open connections from helper threads; without a pool each is closed
# with its thread, so the test database can be dropped at the end. Server processes
# started by the end-to-end tests run core.settings and do use the pool.
os.environ.setdefault("DATABASE_POOL", "false")
for name in ("REDIS_URL", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)
os.environ.setdefault("DATABASE_URL", os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledgerpulse"))

from core.settings import *  # noqa: E402,F401,F403
from tests.services import postgres_available  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("postgresql") and not postgres_available(DATABASES["default"]):  # noqa: F405
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("PostgreSQL is not answering on %(HOST)s:%(PORT)s and CI=true: refusing to skip" % DATABASES["default"])  # noqa: F405
    # A developer machine without PostgreSQL still runs the unit tests on SQLite;
    # tests marked needs_postgres are skipped there.
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = "memory://"
# MD5 keeps fixture users fast; users for real server processes are hashed with
# PBKDF2, which those processes (running core.settings) can verify.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
