"""OpenTelemetry spans along an approval (request -> command -> projector task -> publish), off unless configured.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set (settings.TRACING_ENABLED): each process then
sets up the SDK on first use, exporting over OTLP/HTTP in batches. When it is off, nothing here
imports OpenTelemetry and every function returns at once: `active()` is one global read.

The projector runs one task for a batch of many approvals, so its span is a root of its own and
links to each approval's trace: a command stores its W3C trace context in the event's metadata
(`trace_metadata()`, key "traceparent") and the task adds one link per event (`link_events`).
docs/logs-and-traces.md tells how to turn it on.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext

# The SDK's tracer once set up in this process, else None; False: settings say tracing is off.
_tracer = None
_pid = None
_NULL = nullcontext()
# A span holds at most this many links (the SDK's default limit): a rebuild-sized batch links a sample.
MAX_LINKS = 128
TRACEPARENT = "traceparent"


def active() -> bool:
    """Whether spans are recorded in this process (sets the SDK up on first call when configured)."""
    if _tracer is False:
        return False
    if _tracer is not None and _pid == os.getpid():
        return True
    return _setup()


def _setup() -> bool:
    global _tracer, _pid
    from django.conf import settings

    if not getattr(settings, "TRACING_ENABLED", False):
        _tracer = False
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from core.logconfig import process_kind

    # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and _HEADERS, _TIMEOUT...) itself.
    provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME, "process.kind": process_kind()}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    return True


def use_provider(provider) -> None:
    """Record spans through `provider` in this process (the in-memory exporter's, in tests); None: off."""
    global _tracer, _pid
    _pid = os.getpid()
    if provider is None:
        _tracer = False
        return
    _tracer = provider.get_tracer("ledgerpulse")


def span(name: str, *, root: bool = False, kind: str = "INTERNAL", attributes: dict | None = None):
    """A context manager: a span named `name` (a child of the current one unless `root`), or nothing when off."""
    if not active():
        return _NULL
    return _span(name, root, kind, attributes)


@contextmanager
def _span(name, root, kind, attributes):
    from opentelemetry import context, trace

    parent = context.Context() if root else None
    with _tracer.start_as_current_span(name, context=parent, kind=getattr(trace.SpanKind, kind), attributes=attributes) as current:
        yield current


def trace_metadata() -> dict:
    """{"traceparent": ...} of the current span, for an event's metadata; {} when tracing is off or no span is open."""
    if not active():
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict = {}
    TraceContextTextMapPropagator().inject(carrier)
    return {TRACEPARENT: carrier[TRACEPARENT]} if TRACEPARENT in carrier else {}


def link_events(metadatas) -> int:
    """Link the current span to the traces stored in these events' metadata; returns the links added."""
    if not active():
        return 0
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    current = trace.get_current_span()
    if not current.is_recording():
        return 0
    propagator = TraceContextTextMapPropagator()
    added = len(getattr(current, "links", ()))
    start = added
    for metadata in metadatas:
        if added >= MAX_LINKS:
            break
        parent = (metadata or {}).get(TRACEPARENT)
        if not parent:
            continue
        linked = trace.get_current_span(propagator.extract({TRACEPARENT: parent})).get_span_context()
        if linked.is_valid:
            current.add_link(linked)
            added += 1
    return added - start


def start_request_span(request) -> None:
    """The server span of an HTTP request (continuing a caller's W3C traceparent header), made current."""
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({TRACEPARENT: request.headers.get(TRACEPARENT, "")})
    server = _tracer.start_span(
        request.method, context=parent, kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": request.method, "url.path": request.path, "ledgerpulse.request_id": request.id},
    )
    request._trace_span = server
    request._trace_token = context.attach(trace.set_span_in_context(server))


def end_request_span(request, response) -> None:
    from opentelemetry import context, trace

    server = getattr(request, "_trace_span", None)
    if server is None:
        return
    match = getattr(request, "resolver_match", None)
    if match is not None:
        server.set_attribute("http.route", match.route)
        if match.view_name:
            server.set_attribute("ledgerpulse.view", match.view_name)
        server.update_name(f"{request.method} {match.route}")
    server.set_attribute("http.response.status_code", response.status_code)
    if response.status_code >= 500:
        server.set_status(trace.StatusCode.ERROR)
    server.end()
    try:
        context.detach(request._trace_token)
    except ValueError:
        pass  # detached in another context (an async stack's hand-over): the span is ended all the same
    request._trace_span = None


# The span of each task run in this process, by task id (a prefork child runs one at a time; eager runs nest).
_task_spans: dict = {}


def connect_celery() -> None:
    """A root span per task run (a consumer of work that many requests queued: it links to them, see link_events)."""
    from celery import signals

    signals.task_prerun.connect(_start_task_span, weak=False, dispatch_uid="core.tracing.start_task_span")
    signals.task_postrun.connect(_end_task_span, weak=False, dispatch_uid="core.tracing.end_task_span")


def _start_task_span(task_id=None, task=None, **kwargs) -> None:
    if not active():
        return
    from opentelemetry import context, trace

    name = getattr(task, "name", "task")
    started = _tracer.start_span(
        f"celery.task {name}", context=context.Context(), kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "celery", "messaging.message.id": task_id or "", "celery.task_name": name},
    )
    _task_spans[task_id] = (started, context.attach(trace.set_span_in_context(started)))


def _end_task_span(task_id=None, state=None, **kwargs) -> None:
    entry = _task_spans.pop(task_id, None)
    if entry is None:
        return
    from opentelemetry import context, trace

    started, token = entry
    if state and state != "SUCCESS":
        started.set_status(trace.StatusCode.ERROR, state)
    started.end()
    context.detach(token)
