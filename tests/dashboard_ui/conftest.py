"""Browser fixtures for the dashboard page: Debian's Chromium driven by Playwright's sync API.

Playwright's sync API keeps an asyncio loop running on the main thread while it is
started, and Django refuses ORM calls there (SynchronousOnlyOperation). So the
browser lives only as long as one test, starts after the database and the live
stack and stops before them; database work inside a test goes through `in_thread`.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def in_thread(fn, *args, **kwargs):
    """Run ORM code off the main thread (see the module docstring); returns its result."""

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@contextlib.contextmanager
def launched_chromium():
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI=true")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Contexts:
    """Browser contexts (separate cookie jars) opened on demand, closed with the fixture."""

    def __init__(self, browser):
        self.browser = browser
        self.opened = []

    def new(self, width: int = 1280, height: int = 800, **options):
        context = self.browser.new_context(viewport={"width": width, "height": height}, **options)
        context.set_default_timeout(10_000)
        self.opened.append(context)
        return context

    def close(self):
        for context in self.opened:
            context.close()


@pytest.fixture
def chromium():
    """A browser for tests that need no database."""
    with launched_chromium() as browser:
        contexts = Contexts(browser)
        yield contexts
        contexts.close()


@pytest.fixture
def browser(live_stack):
    """A browser started after (and stopped before) the live stack and its database."""
    with launched_chromium() as launched:
        contexts = Contexts(launched)
        yield contexts
        contexts.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# Dual control in the stack of the decision and screenshot tests: EUR amounts from 2,000 need two approvers.
DUAL_CONTROL = "EUR:2000"


@pytest.fixture
def dual_control_stack(request, transactional_db, tmp_path):
    """tests/conftest.py's live_stack, with APPROVAL_DUAL_CONTROL set (DUAL_CONTROL).

    A test marked seed_demo(*args) gets `manage.py seed_demo <args>` run with the stack's environment while
    the stack boots (it writes to the database only; the worker projects it once ready), and fails if it fails."""
    import subprocess
    import sys

    from django.db import connection

    from tests.services import redis_available, require
    from tests.stack import ROOT, LiveStack, flush_test_redis, stack_env

    require("PostgreSQL", connection.vendor == "postgresql")
    require("Redis", redis_available())
    flush_test_redis()
    stack = LiveStack(env=stack_env(APPROVAL_DUAL_CONTROL=DUAL_CONTROL), log_dir=tmp_path)
    seed = request.node.get_closest_marker("seed_demo")
    seeding = None
    try:
        if seed is not None:
            seeding = subprocess.Popen(
                [sys.executable, "manage.py", "seed_demo", *seed.args], cwd=ROOT, env=stack.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        stack.wait_ready(stack.start_worker(wait=False), stack.start_server(wait=False), timeout=60)
        if seeding is not None:
            _, errors = seeding.communicate(timeout=120)
            assert seeding.returncode == 0, errors
        yield stack
    finally:
        if seeding is not None and seeding.poll() is None:
            seeding.kill()
            seeding.wait()
        stack.stop()
        flush_test_redis()


@pytest.fixture
def dual_control_browser(dual_control_stack):
    """A browser started after (and stopped before) the dual-control stack."""
    with launched_chromium() as launched:
        contexts = Contexts(launched)
        yield contexts
        contexts.close()
