"""Is PostgreSQL / Redis answering? Used to skip (or, under CI=true, fail) tests that need them."""
import os
import socket

import pytest


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_available(db: dict) -> bool:
    return _port_open(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))


REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_available() -> bool:
    return _port_open(REDIS_HOST, REDIS_PORT)


def require(service: str, available: bool) -> None:
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{service} is not answering and CI=true: a test that needs it fails instead of skipping")
    pytest.skip(f"{service} is not answering on loopback")
