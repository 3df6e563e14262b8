"""Traces: an approval's request span, its event's traceparent, the projector task linked to it, the publish inside the task."""
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from core import tracing
from core.models import StoredEvent

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


def named(finished, prefix):
    return [span for span in finished if span.name.startswith(prefix)]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_approval_is_a_server_span_whose_trace_the_projector_task_links_to_and_the_publish_is_inside_the_task(api, spans, client_for, clerk_user):
    # Submitted by a clerk: nobody approves their own submission.
    created = client_for(clerk_user).post("/api/transactions/", {"amount": "12.34", "currency": "EUR"}, format="json")
    assert created.status_code == 201
    spans.clear()
    approved = api.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "checked"}, format="json")
    assert approved.status_code == 200, approved.content
    finished = spans.get_finished_spans()

    [server] = named(finished, "POST ")
    assert server.kind == SpanKind.SERVER and server.parent is None
    assert server.name == "POST api/transactions/<uuid:pk>/approve/" or server.attributes["http.route"] in server.name
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["ledgerpulse.request_id"] == approved["X-Request-ID"]

    # The command is a span inside the request's.
    [command] = named(finished, "transaction_approve")
    assert command.parent is not None and command.parent.span_id == server.context.span_id

    # The event carries the command's trace context: the approval's trace, the command's span.
    event = StoredEvent.objects.get(position=approved.json()["position"])
    traceparent = event.metadata["traceparent"]
    assert traceparent.split("-")[1] == format(server.context.trace_id, "032x")
    assert traceparent.split("-")[2] == format(command.context.span_id, "016x")

    [task] = named(finished, "celery.task analytics.project_weekly_income")
    # A root of its own (a batch serves many approvals), linked to this approval's trace.
    assert task.parent is None and task.context.trace_id != server.context.trace_id
    assert task.kind == SpanKind.CONSUMER
    assert [link.context.trace_id for link in task.links] == [server.context.trace_id]
    assert format(task.links[0].context.span_id, "016x") == traceparent.split("-")[2]

    [publish] = named(finished, "realtime.publish")
    assert publish.parent is not None and publish.parent.span_id == task.context.span_id
    assert publish.context.trace_id == task.context.trace_id
    assert publish.attributes["ledgerpulse.through"] >= event.position


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_continues_a_callers_w3c_trace(api, spans):
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = api.get("/api/transactions/", HTTP_TRACEPARENT=caller)
    assert response.status_code == 200
    [server] = named(spans.get_finished_spans(), "GET ")
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(server.parent.span_id, "016x") == "b7ad6b7169203331"


def test_a_failed_request_marks_its_span_as_an_error(spans, rf):
    from django.http import HttpResponse

    from core.middleware import RequestIdMiddleware

    middleware = RequestIdMiddleware(lambda request: HttpResponse(status=503))
    middleware(rf.get("/healthz"))
    [server] = spans.get_finished_spans()
    assert server.status.status_code.name == "ERROR" and server.attributes["http.response.status_code"] == 503


def test_links_are_bounded_and_skip_events_without_a_trace_context(spans):
    from opentelemetry import trace

    valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.span("batch") as current:
        added = tracing.link_events([{"traceparent": valid}] * 500 + [{}, {"traceparent": "garbage"}, None])
        assert added == tracing.MAX_LINKS
        assert tracing.link_events([{"traceparent": valid}]) == 0
        assert trace.get_current_span() is current
    [batch] = spans.get_finished_spans()
    assert len(batch.links) == tracing.MAX_LINKS


def test_when_tracing_is_off_nothing_is_recorded_and_the_tracing_sdk_is_never_imported():
    """The default: no OTEL_EXPORTER_OTLP_ENDPOINT. The approve path calls trace_metadata() and the middleware's hooks."""
    code = """
import sys, django
django.setup()
from django.test import RequestFactory
from django.http import HttpResponse
from core import tracing
from core.middleware import RequestIdMiddleware
RequestIdMiddleware(lambda request: HttpResponse())(RequestFactory().get("/healthz"))
with tracing.span("x") as nothing:
    assert nothing is None
assert tracing.trace_metadata() == {} and tracing.link_events([{"traceparent": "00-1-2-01"}]) == 0 and not tracing.active()
# redis-py imports OpenTelemetry's metrics API when it is installed; the tracing SDK, its exporter and
# the W3C propagator are ours to load, and only when tracing is on.
ours = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.trace.propagation.tracecontext")
loaded = sorted(name for name in sys.modules if name.startswith(ours))
assert not loaded, loaded
"""
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_SECRET_KEY": "tracing-test-key-" + "x" * 40, "DJANGO_ENV_FILE": "/dev/null"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_endpoint_setting_turns_tracing_on_and_is_checked():
    code = "import django; django.setup(); from django.conf import settings; print(settings.TRACING_ENABLED)"
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_SECRET_KEY": "tracing-test-key-" + "x" * 40, "DJANGO_ENV_FILE": "/dev/null"}
    on = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, capture_output=True, text=True, timeout=60)
    assert on.stdout.strip() == "True", on.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "OTEL_EXPORTER_OTLP_ENDPOINT must start with http://, https://" in bad.stderr


def test_with_an_endpoint_set_a_process_exports_its_spans_over_otlp_http():
    """The real set-up path (_setup): a collector stand-in on a loopback port receives the batch at exit."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    code = """
import django
django.setup()
from core import tracing
assert tracing.active()
with tracing.span("manual-check", attributes={"ledgerpulse.test": "yes"}):
    assert tracing.trace_metadata()["traceparent"].startswith("00-")
"""
    env = {
        "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_SECRET_KEY": "tracing-test-key-" + "x" * 40,
        "DJANGO_ENV_FILE": "/dev/null", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
    }
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(path, content_type) for path, content_type, _ in received] == [("/v1/traces", "application/x-protobuf")]
    assert b"manual-check" in received[0][2] and b"ledgerpulse" in received[0][2]
