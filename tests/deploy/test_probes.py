"""The Kubernetes probes and the Compose healthcheck, made as the kubelet and Docker would, against the web line with the shipped settings."""
import http.client
import re
import subprocess
import sys

import pytest
import yaml

from tests.deploy.parsing import compose_value
from tests.services import redis_available, require
from scripts.stack import http_ok
from tests.stack import ROOT, LiveStack, flush_test_redis, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.needs_redis]


def web_container() -> dict:
    web = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "web.yaml").read_text()) if d["kind"] == "Deployment")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    return container


def kubelet_get(port: int, http_get: dict) -> int:
    """GET as the kubelet does: to the pod's address, with the probe's headers (its Host, if it names one)."""
    headers = {h["name"]: h["value"] for h in http_get.get("httpHeaders", [])}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", http_get["path"], headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# Where the shipped settings name the services, or leave them to the operator: the test's own.
NOT_SHIPPED = ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY")


def kubernetes_settings() -> dict[str, str]:
    return next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "config.yaml").read_text()) if d)["data"]


def compose_settings() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["web"]["environment"]
    given = {"DJANGO_SECRET_KEY": "unused", "POSTGRES_PASSWORD": "unused", "DJANGO_ALLOWED_HOSTS": "ledger.example.com"}
    return {name: compose_value(value, given) for name, value in environment.items()}


@pytest.fixture
def web_with(transactional_db, tmp_path):
    """Starts the web line with one deployment's settings (host names, HTTPS redirect, HSTS, proxies)."""
    require("Redis", redis_available())
    flush_test_redis()
    stacks = []

    def start(settings: dict[str, str]) -> LiveStack:
        shipped = {name: value for name, value in settings.items() if name not in NOT_SHIPPED}
        stack = LiveStack(env=stack_env(**{**shipped, "WEB_CONCURRENCY": "1"}), log_dir=tmp_path)
        stacks.append(stack)
        server = stack.start_server(wait=False)
        # The stack's own readiness check asks as 127.0.0.1, which these settings refuse: ask as localhost.
        server.ready = lambda: http_ok(f"http://localhost:{stack.port}/healthz")
        stack.wait_ready(server, timeout=60)
        return stack

    try:
        yield start
    finally:
        for stack in stacks:
            stack.stop()
        flush_test_redis()


def test_it_passes_every_kubernetes_probe_of_the_web_pods(web_with):
    shipped_web = web_with(kubernetes_settings())
    container = web_container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert kubelet_get(shipped_web.port, container[probe]["httpGet"]) == 200, probe
    # Without the Host header the kubelet would send the pod's address: refused, so the header matters.
    assert kubelet_get(shipped_web.port, {"path": "/healthz"}) == 400


def test_it_passes_the_compose_healthcheck_of_the_web_service(web_with):
    shipped_web = web_with(compose_settings())
    test = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["web"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    # The same command, pointed at this server's port instead of the container's 8000.
    command = [sys.executable, *(re.sub(r":8000/", f":{shipped_web.port}/", arg) for arg in test[2:])]
    assert command != [sys.executable, *test[2:]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
