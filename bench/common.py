"""What every benchmark sets up the same way: its own database and Redis database, and the environment for them."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure_environment(*, db_name: str, redis_db: int) -> None:
    """Environment for the benchmark process and the servers it starts (before Django is set up)."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="core.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        REDIS_URL=f"redis://127.0.0.1:6379/{redis_db}",
        DJANGO_SECRET_KEY="bench-only-secret-key-0123456789abcdef0123456789",
        DJANGO_DEBUG="false",
        DJANGO_SECURE_COOKIES="false",
        LOG_LEVEL="WARNING",
        CHANNELS_PREFIX=f"lp-bench-{uuid.uuid4().hex[:6]}",
    )


def recreate_database(*, db_name: str, redis_db: int) -> None:
    """Drop and create the benchmark's database, empty its Redis database, and migrate."""
    import psycopg
    import redis

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
