"""GET /metrics: who may scrape, the series and their labels, bounded route labels, and summing across processes."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from core.metrics_collect import MultiProcessRoot
from core.metrics_dir import prepare
from tests.realtime.support import ORIGIN, logged_in, socket, snapshot_of

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 40
OUTSIDE = "203.0.113.9"
APPROVE_ROUTE = "api/transactions/<uuid:transaction_id>/approve/"


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client=None, **extra) -> dict:
    """{(sample name, frozenset(labels)): value} of one /metrics answer (asserting it was served)."""
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def approve_one(api) -> str:
    from datetime import datetime

    from tests.factories import submit

    # Submitted by another actor (nobody approves their own submission), through the command.
    created = submit("12.50", "EUR", datetime.fromisoformat("2026-11-18T09:30:00+01:00"))
    decided = api.post(f"/api/transactions/{created.id}/approve/", {}, format="json")
    assert decided.status_code == 200, decided.content
    return str(created.id)


# --- access ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_serves_the_prometheus_text_format_to_a_loopback_client():
    series = scrape()
    assert ("ledgerpulse_projection_lag_events", frozenset({("projection", "weekly_income")})) in series


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_it_answers_405_to_anything_but_get(method):
    response = getattr(Client(), method)("/metrics")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_a_client_outside_the_allowed_networks_gets_a_404_problem_that_tells_nothing():
    response = Client(REMOTE_ADDR=OUTSIDE).get("/metrics")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert b"ledgerpulse_" not in response.content and b"metrics" not in response.content.replace(b"/metrics", b"")


@pytest.mark.django_db
def test_a_scraper_addressing_the_pod_by_ip_over_plain_http_is_answered_not_refused_or_redirected(settings):
    # Prometheus scrapes each web pod by its IP (a Host no ALLOWED_HOSTS lists) over plain HTTP inside the
    # network, while the deployment redirects browsers to HTTPS; the access rule still decides.
    from core.clientip import parse_networks

    settings.SECURE_SSL_REDIRECT = True
    settings.METRICS_ALLOWED_NETWORKS = parse_networks("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8")
    inside = Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_HOST="10.1.2.3:8000")
    assert inside.status_code == 200 and b"ledgerpulse_http_requests_total" in inside.content
    outside = Client(REMOTE_ADDR=OUTSIDE).get("/metrics", HTTP_HOST="10.1.2.3:8000")
    assert outside.status_code == 404
    # Every other path keeps both checks.
    assert Client(REMOTE_ADDR="10.1.2.3").get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 400


@pytest.mark.django_db
def test_a_configured_network_lets_its_clients_in_and_loopback_out(settings):
    from core.clientip import parse_networks

    settings.METRICS_ALLOWED_NETWORKS = parse_networks("METRICS_ALLOWED_NETWORKS", "203.0.113.0/24")
    scrape(Client(REMOTE_ADDR=OUTSIDE))
    assert Client().get("/metrics").status_code == 404


@pytest.mark.django_db
def test_the_bearer_token_opens_it_from_anywhere_and_nothing_else_does(settings):
    settings.METRICS_TOKEN = TOKEN
    outside = Client(REMOTE_ADDR=OUTSIDE)
    scrape(outside, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    scrape(outside, HTTP_AUTHORIZATION=f"bearer {TOKEN}")
    for header in (f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", "Bearer \udcff"):
        assert outside.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 404, header


@pytest.mark.django_db
def test_without_a_configured_token_no_bearer_opens_it(settings):
    settings.METRICS_TOKEN = None
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", HTTP_AUTHORIZATION="Bearer None").status_code == 404


@pytest.mark.django_db
def test_a_forwarded_for_header_counts_only_from_a_trusted_proxy(settings):
    from core.clientip import parse_networks

    spoofed = Client(REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.get("/metrics").status_code == 404
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", "10.0.0.0/8")
    scrape(Client(REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="127.0.0.1"))
    assert Client(REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR=OUTSIDE).get("/metrics").status_code == 404


def start_with(env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_ENV_FILE": "/dev/null",
            "DJANGO_SECRET_KEY": "metrics-test-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env, named", [
    ({"METRICS_TOKEN": "short-secret-value"}, "METRICS_TOKEN"),
    ({"METRICS_TOKEN": "a secret with spaces in it that is long enough"}, "METRICS_TOKEN"),
    ({"METRICS_ALLOWED_NETWORKS": "loopback"}, "METRICS_ALLOWED_NETWORKS"),
])
def test_a_bad_setting_stops_start_up_naming_it_without_echoing_a_token(env, named):
    result = start_with(env)
    assert result.returncode != 0 and named in result.stderr
    assert "short-secret-value" not in result.stderr and "spaces in it" not in result.stderr


# --- series and labels ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_approval_counts_the_request_by_route_the_decision_the_events_and_the_projection_run(api):
    before = {
        "requests": sample("ledgerpulse_http_requests_total", route=APPROVE_ROUTE, method="POST", status="200"),
        "duration": sample("ledgerpulse_http_request_duration_seconds_count", route=APPROVE_ROUTE, method="POST"),
        "approvals": sample("ledgerpulse_transaction_approvals_total"),
        "rejections": sample("ledgerpulse_transaction_rejections_total"),
        "events": sample("ledgerpulse_events_appended_total", type="TransactionApproved"),
        "runs": sample("ledgerpulse_projection_runs_total", projection="weekly_income", outcome="caught_up"),
        "batches": sample("ledgerpulse_projection_batch_events_count", projection="weekly_income"),
        "batch_sum": sample("ledgerpulse_projection_batch_events_sum", projection="weekly_income"),
        "published": sample("ledgerpulse_commit_to_publish_seconds_count"),
        "task": sample("ledgerpulse_celery_task_duration_seconds_count", task="analytics.project_weekly_income", state="SUCCESS"),
    }
    approve_one(api)
    after = scrape()
    route = frozenset({("route", APPROVE_ROUTE), ("method", "POST"), ("status", "200")})
    assert after[("ledgerpulse_http_requests_total", route)] == before["requests"] + 1
    assert after[("ledgerpulse_http_request_duration_seconds_count", frozenset({("route", APPROVE_ROUTE), ("method", "POST")}))] \
        == before["duration"] + 1
    assert after[("ledgerpulse_transaction_approvals_total", frozenset())] == before["approvals"] + 1
    assert after[("ledgerpulse_transaction_rejections_total", frozenset())] == before["rejections"]
    assert after[("ledgerpulse_events_appended_total", frozenset({("type", "TransactionApproved")}))] == before["events"] + 1
    weekly = frozenset({("projection", "weekly_income")})
    assert after[("ledgerpulse_projection_runs_total", weekly | {("outcome", "caught_up")})] >= before["runs"] + 1
    assert after[("ledgerpulse_projection_batch_events_count", weekly)] >= before["batches"] + 1
    assert after[("ledgerpulse_projection_batch_events_sum", weekly)] >= before["batch_sum"] + 1
    assert after[("ledgerpulse_commit_to_publish_seconds_count", frozenset())] >= before["published"] + 1
    assert after[("ledgerpulse_celery_task_duration_seconds_count",
                  frozenset({("task", "analytics.project_weekly_income"), ("state", "SUCCESS")}))] >= before["task"] + 1
    # Caught up: the lag read at scrape time is zero.
    assert after[("ledgerpulse_projection_lag_events", weekly)] == 0
    assert after[("ledgerpulse_projection_lag_seconds", weekly)] == 0


@pytest.mark.django_db(transaction=True)
def test_a_rejection_counts_as_a_rejection(api):
    before = sample("ledgerpulse_transaction_rejections_total"), sample("ledgerpulse_transaction_approvals_total")
    created = api.post("/api/transactions/", {"amount": "1.00", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00Z"}, format="json")
    assert api.post(f"/api/transactions/{created.json()['id']}/reject/", {"reason": "no"}, format="json").status_code == 200
    assert (sample("ledgerpulse_transaction_rejections_total"), sample("ledgerpulse_transaction_approvals_total")) == (before[0] + 1, before[1])


@pytest.mark.django_db
def test_the_route_label_is_the_url_pattern_so_ids_never_make_new_series(api):
    route = "api/transactions/<uuid:transaction_id>/"
    before = sample("ledgerpulse_http_requests_total", route=route, method="GET", status="404")
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for id_ in ids:
        assert api.get(f"/api/transactions/{id_}/").status_code == 404
    assert sample("ledgerpulse_http_requests_total", route=route, method="GET", status="404") == before + 5
    routes = {dict(labels)["route"] for name, labels in scrape() if name == "ledgerpulse_http_requests_total"}
    assert not [route for route in routes for id_ in ids if id_ in route]


@pytest.mark.django_db
def test_unmatched_paths_and_unknown_methods_share_fixed_labels():
    before = sample("ledgerpulse_http_requests_total", route=metrics.UNMATCHED_ROUTE, method="GET", status="404")
    client = Client()
    for n in range(3):
        client.get(f"/no-such-page-{n}/{uuid.uuid4()}")
    assert sample("ledgerpulse_http_requests_total", route=metrics.UNMATCHED_ROUTE, method="GET", status="404") == before + 3
    other = sample("ledgerpulse_http_requests_total", route="healthz", method="other", status="200")
    client.generic("BREW", "/healthz")
    client.generic("X" * 200, "/healthz")
    assert sample("ledgerpulse_http_requests_total", route="healthz", method="other", status="200") == other + 2


@pytest.mark.django_db(transaction=True)
def test_a_celery_task_that_raises_counts_as_a_failure(monkeypatch):
    from analytics import tasks

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks, "project_and_publish", broken)
    name = "analytics.project_weekly_income"
    before = sample("ledgerpulse_celery_task_failures_total", task=name), sample(
        "ledgerpulse_celery_task_duration_seconds_count", task=name, state="FAILURE")
    # As a worker runs it: the error is the task's state, not raised into the caller (eager mode would re-raise it first).
    result = tasks.project_weekly_income.apply(throw=False)
    assert result.state == "FAILURE"
    assert sample("ledgerpulse_celery_task_failures_total", task=name) == before[0] + 1
    assert sample("ledgerpulse_celery_task_duration_seconds_count", task=name, state="FAILURE") == before[1] + 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_projection_run_is_counted_as_failed(monkeypatch):
    from analytics import projection, tasks

    def failing(**kwargs):
        raise projection.ProjectionFailed(after=0, first=1, through=1, cause=ValueError("bad row"))

    monkeypatch.setattr(projection, "project_next_batch", failing)
    before = sample("ledgerpulse_projection_runs_total", projection="weekly_income", outcome="failed")
    assert tasks.project_and_publish() == 0
    assert sample("ledgerpulse_projection_runs_total", projection="weekly_income", outcome="failed") == before + 1


@pytest.mark.django_db
def test_the_lag_is_read_at_scrape_time_from_the_projection(settings):
    settings.HEALTH_PROJECTION_LAG = "tests.core.test_metrics.stuck_projection"
    series = scrape()
    assert series[("ledgerpulse_projection_lag_events", frozenset({("projection", "weekly_income")}))] == 7
    assert series[("ledgerpulse_projection_lag_seconds", frozenset({("projection", "weekly_income")}))] == 42.5


def stuck_projection():
    return {"weekly_income": {"applied": 3, "last_event": 10, "behind": 7, "seconds": 42.5}}


def broken_lag():
    raise ConnectionError("database away")


@pytest.mark.django_db
def test_a_failed_lag_read_leaves_the_lag_out_and_still_answers(settings):
    settings.HEALTH_PROJECTION_LAG = "tests.core.test_metrics.broken_lag"
    series = scrape()
    assert not [name for name, _ in series if name.startswith("ledgerpulse_projection_lag")]
    assert any(name == "ledgerpulse_http_requests_total" for name, _ in series)


@pytest.fixture
def local_origin(settings):
    """WebsocketCommunicator sends no Host header: its page's origin is allowed explicitly (as tests/realtime do)."""
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["http://localhost"]


@pytest.mark.usefixtures("local_origin")
@pytest.mark.django_db(transaction=True)
async def test_sockets_are_counted_while_open_with_their_messages_and_closes(admin_user, client_for):
    _, cookie = await logged_in(client_for, admin_user)
    connections = sample("ledgerpulse_websocket_connections")
    snapshots = sample("ledgerpulse_websocket_messages_sent_total", kind="snapshot")
    replies = sample("ledgerpulse_websocket_messages_sent_total", kind="reply")
    closes = sample("ledgerpulse_websocket_closes_total", code="1000", by="client")
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        assert sample("ledgerpulse_websocket_connections") == connections + 1
        assert sample("ledgerpulse_websocket_messages_sent_total", kind="snapshot") == snapshots + 1
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
        assert sample("ledgerpulse_websocket_messages_sent_total", kind="reply") == replies + 1
    assert sample("ledgerpulse_websocket_connections") == connections
    assert sample("ledgerpulse_websocket_closes_total", code="1000", by="client") == closes + 1


@pytest.mark.usefixtures("local_origin")
@pytest.mark.django_db(transaction=True)
async def test_a_refused_socket_counts_the_servers_close_code():
    before = sample("ledgerpulse_websocket_closes_total", code="4401", by="server")
    connections = sample("ledgerpulse_websocket_connections")
    async with socket(ORIGIN) as ws:
        assert (await ws.receive_output(timeout=5))["code"] == 4401
    assert sample("ledgerpulse_websocket_closes_total", code="4401", by="server") == before + 1
    assert sample("ledgerpulse_websocket_connections") == connections


def test_close_codes_a_client_chooses_share_one_label():
    assert {metrics.close_code_label(code) for code in range(3000, 5000) if code not in metrics.KNOWN_CLOSE_CODES} == {"other"}
    assert metrics.close_code_label(4429) == "4429" and metrics.close_code_label("1000") == "other"


def test_every_series_follows_the_naming_conventions():
    names = [m._name for m in vars(metrics).values() if hasattr(m, "_type") and hasattr(m, "_name")]
    assert len(names) >= 15
    for metric in [m for m in vars(metrics).values() if hasattr(m, "_type") and hasattr(m, "_name")]:
        assert metric._name.startswith("ledgerpulse_")
        if metric._type == "histogram" and metric._name not in ("ledgerpulse_projection_batch_events",):
            assert metric._name.endswith("_seconds"), metric._name
        if metric._type == "counter":
            assert not metric._name.endswith("_total")  # the client appends it once


# --- several processes -----------------------------------------------------------------------

CHILD = """
import os, sys
from core import metrics
metrics.APPROVALS.inc(int(sys.argv[1]))
metrics.HTTP_DURATION.labels("healthz", "GET").observe(0.002)
metrics.WEBSOCKET_CONNECTIONS.inc(int(sys.argv[2]))
"""


def run_child(directory: str, approvals: int, sockets: int) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PROMETHEUS_MULTIPROC_DIR"] = directory
    child = subprocess.run([sys.executable, "-c", CHILD, str(approvals), str(sockets)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr


def merged(root: str) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value for family in MultiProcessRoot(root).collect() for s in family.samples}


def test_counters_and_histograms_are_summed_over_every_process_groups_directory(tmp_path):
    root = str(tmp_path)
    web, worker = prepare("web", root, os.getpid()), prepare("worker", root, os.getppid())
    run_child(web, 2, 0)
    run_child(web, 3, 0)
    run_child(worker, 4, 0)
    series = merged(root)
    assert series[("ledgerpulse_transaction_approvals_total", frozenset())] == 9
    assert series[("ledgerpulse_http_request_duration_seconds_count", frozenset({("route", "healthz"), ("method", "GET")}))] == 3


def test_a_dead_processs_open_sockets_stop_counting_but_its_counters_stay(tmp_path):
    root = str(tmp_path)
    web = prepare("web", root, os.getpid())
    run_child(web, 1, 5)  # the child has exited: its 5 sockets are gone with it
    (Path(web) / f"gauge_livesum_{os.getpid()}.db").write_bytes((Path(web) / next(
        n for n in os.listdir(web) if n.startswith("gauge_livesum_"))).read_bytes())  # a live process holding 5
    series = merged(root)
    assert series[("ledgerpulse_websocket_connections", frozenset())] == 5
    assert series[("ledgerpulse_transaction_approvals_total", frozenset())] == 1
    assert len([n for n in os.listdir(web) if n.startswith("gauge_livesum_")]) == 1


def test_a_pool_process_that_exits_drops_its_open_socket_count_itself(tmp_path):
    directory = prepare("worker", str(tmp_path), os.getpid())
    code = "from core import metrics, metrics_celery; metrics.WEBSOCKET_CONNECTIONS.inc(3); metrics_celery.pool_process_exiting()"
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PROMETHEUS_MULTIPROC_DIR": directory},
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert not [name for name in os.listdir(directory) if name.startswith("gauge_livesum_")]
    assert [name for name in os.listdir(directory) if name.startswith("counter_")]  # its counters stay


def test_a_group_starts_with_an_empty_directory_and_dead_groups_are_removed(tmp_path):
    root = str(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"worker-{dead.pid}"
    stale.mkdir()
    alive = tmp_path / f"web-{os.getppid()}"
    alive.mkdir()
    (alive / "counter_1.db").write_bytes(b"")
    mine = tmp_path / f"web-{os.getpid()}"
    mine.mkdir()
    (mine / "counter_2.db").write_bytes(b"left from an earlier boot")
    assert prepare("web", root, os.getpid()) == str(mine)
    assert os.listdir(mine) == [] and not stale.exists() and (alive / "counter_1.db").exists()
    with pytest.raises(ValueError):
        prepare("beat", root, os.getpid())
    with pytest.raises(ValueError):
        prepare("web", "relative/dir", os.getpid())


def test_the_procfile_gives_web_and_worker_a_directory_and_beat_none():
    from scripts.stack import procfile

    lines = procfile()
    for kind in ("web", "worker"):
        assert f'PROMETHEUS_MULTIPROC_DIR="$(python core/metrics_dir.py {kind} $$)" || exit 1; export PROMETHEUS_MULTIPROC_DIR;' in lines[kind]
    assert "PROMETHEUS_MULTIPROC_DIR" not in lines["beat"]
