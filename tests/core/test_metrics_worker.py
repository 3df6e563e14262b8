"""The worker's metrics endpoint: the web's access rule over WSGI, its own group's files, the port it reports, off unless METRICS_PORT."""
import json
import logging
import os
import socket
import subprocess
import sys
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core import metrics_worker
from core.metrics_worker import PORT_FILE, MetricsServer, family_of, metrics_app, registry_for

TOKEN = "t" * 40
OUTSIDE = "203.0.113.9"


@pytest.fixture(scope="module")
def group_dir(tmp_path_factory):
    """A worker group's directory holding one pool process's files (written by a real process in multiprocess mode)."""
    directory = tmp_path_factory.mktemp("worker-1")
    script = (
        "from core import metrics; "
        "metrics.CELERY_TASK_FAILURES.labels('analytics.project_weekly_income').inc(3); "
        "metrics.PROJECTION_RUNS.labels('weekly_income', 'caught_up').inc()"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=metrics_worker.__file__.rsplit("/core/", 1)[0], check=True, timeout=60,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    return directory


def call(app, *, method="GET", path="/metrics", address="127.0.0.1", **headers):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "REMOTE_ADDR": address, **headers}
    setup_testing_defaults(environ)
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started.update(status=int(status.split()[0]), headers=dict(response_headers))

    body = b"".join(app(environ, start_response))
    return started["status"], started["headers"], body


def series(body: bytes) -> dict:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode()) for s in family.samples
    }


def test_it_serves_its_groups_files_to_a_loopback_client(group_dir):
    status, headers, body = call(metrics_app(registry_for(str(group_dir))))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    scraped = series(body)
    assert scraped[("ledgerpulse_celery_task_failures_total", frozenset({("task", "analytics.project_weekly_income")}))] == 3
    assert scraped[("ledgerpulse_projection_runs_total", frozenset({("projection", "weekly_income"), ("outcome", "caught_up")}))] == 1


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer " + "x" * 40}, {"HTTP_AUTHORIZATION": TOKEN}])
def test_it_answers_a_client_outside_the_networks_without_the_token_with_a_bare_404(group_dir, settings, headers):
    settings.METRICS_TOKEN = TOKEN
    status, response_headers, body = call(metrics_app(registry_for(str(group_dir))), address=OUTSIDE, **headers)
    assert status == 404
    assert response_headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["code"] == "not_found"
    assert b"ledgerpulse_" not in body


def test_it_lets_the_token_in_from_anywhere(group_dir, settings):
    settings.METRICS_TOKEN = TOKEN
    status, _, body = call(metrics_app(registry_for(str(group_dir))), address=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert status == 200 and b"ledgerpulse_celery_task_failures_total" in body


def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy(group_dir, settings):
    app = metrics_app(registry_for(str(group_dir)))
    assert call(app, address=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1")[0] == 404
    settings.TRUSTED_PROXIES = ()
    settings.METRICS_ALLOWED_NETWORKS = ()
    assert call(app)[0] == 404  # no network allowed, no token: not even loopback


def test_it_serves_only_the_metrics_path_and_only_get_and_head(group_dir):
    app = metrics_app(registry_for(str(group_dir)))
    assert call(app, path="/")[0] == 404
    assert call(app, path="/metrics/other")[0] == 404
    status, headers, body = call(app, method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and json.loads(body)["code"] == "method_not_allowed"
    status, headers, body = call(app, method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Type"].startswith("text/plain")


def test_the_server_listens_on_the_port_it_writes_down_and_removes_it_when_stopped(group_dir, tmp_path):
    directory = tmp_path / "worker-2"
    directory.mkdir()
    for name in os.listdir(group_dir):
        (directory / name).write_bytes((group_dir / name).read_bytes())
    server = MetricsServer(str(directory), "127.0.0.1", 0)
    try:
        assert server.port > 0
        assert (directory / PORT_FILE).read_text() == f"{server.port}\n"
        response = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
        assert response.status_code == 200 and "ledgerpulse_projection_runs_total" in response.text
    finally:
        server.stop()
    assert not (directory / PORT_FILE).exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)


@pytest.mark.parametrize("bind, family", [("0.0.0.0", socket.AF_INET), ("127.0.0.1", socket.AF_INET), ("::", socket.AF_INET6), ("::1", socket.AF_INET6)])
def test_it_binds_an_ipv6_socket_for_an_ipv6_address(bind, family):
    # (Not bound here: a CI container may have no IPv6 loopback.)
    assert family_of(bind) == family


@pytest.fixture
def no_server():
    assert metrics_worker._server is None
    yield
    metrics_worker.stop()


def test_start_does_nothing_without_metrics_port(no_server, settings, tmp_path, monkeypatch):
    settings.METRICS_PORT = None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics_worker.start()
    assert metrics_worker._server is None
    assert not (tmp_path / PORT_FILE).exists()


def test_start_refuses_without_the_procfiles_metrics_directory_and_says_why(no_server, settings, monkeypatch, caplog):
    settings.METRICS_PORT = 0
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with caplog.at_level(logging.ERROR, logger="core.metrics_worker"):
        metrics_worker.start()
    assert metrics_worker._server is None
    assert "PROMETHEUS_MULTIPROC_DIR is not" in caplog.text


def test_start_serves_once_stop_ends_it_and_a_forked_pool_process_drops_its_copy(no_server, settings, tmp_path, monkeypatch):
    settings.METRICS_PORT = 0
    settings.METRICS_BIND = "127.0.0.1"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics_worker.start()
    server = metrics_worker._server
    assert server is not None
    metrics_worker.start()  # worker_ready once more: still the one server
    assert metrics_worker._server is server
    port = int((tmp_path / PORT_FILE).read_text())
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200

    child = os.fork()
    if child == 0:  # a pool process: worker_process_init closes its inherited listening socket
        try:
            metrics_worker.pool_process_started()
            os._exit(0 if metrics_worker._server is None and server.httpd.socket.fileno() == -1 else 1)
        except BaseException:
            os._exit(2)
    assert os.waitpid(child, 0)[1] == 0
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200  # the parent's still listens

    metrics_worker.stop()
    assert metrics_worker._server is None
    assert not (tmp_path / PORT_FILE).exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)


def test_a_port_in_use_is_logged_and_leaves_the_worker_running(no_server, settings, tmp_path, monkeypatch, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings.METRICS_PORT = taken.getsockname()[1]
        settings.METRICS_BIND = "127.0.0.1"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        with caplog.at_level(logging.ERROR, logger="core.metrics_worker"):
            metrics_worker.start()
    assert metrics_worker._server is None
    assert "could not listen on 127.0.0.1 port" in caplog.text
