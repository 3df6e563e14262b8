"""HTTP side of the metrics: the middleware that times every request, and the /metrics view with its access rule."""
from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from core import metrics
from core.clientip import client_address, in_networks
from core.dualmode import BothModesMiddleware
from core.problems import problem_response


METRICS_PATH = "/metrics"
METRICS_ROUTE = "metrics"


def route_label(request) -> str:
    """The URL pattern that answered ("api/transactions/<uuid:pk>/approve/"), never the path itself:
    paths carry ids, and a client could otherwise mint a new series per request."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.route
    return METRICS_ROUTE if request.path_info == METRICS_PATH else metrics.UNMATCHED_ROUTE


class MetricsMiddleware(BothModesMiddleware):
    """Requests by route, method and status, and their latency (first in MIDDLEWARE: it times all the rest)."""

    def before(self, request):
        request._metrics_started = time.perf_counter()
        if request.path_info == METRICS_PATH:
            # Answered here, ahead of the host check (CommonMiddleware) and the HTTPS redirect
            # (SecurityMiddleware): Prometheus scrapes each web pod by its IP, over plain HTTP inside the
            # network, and the access rule in metrics_view is what guards the endpoint. Nothing here
            # builds a URL from the Host header.
            return metrics_view(request)
        return None

    def after(self, request, response):
        elapsed = time.perf_counter() - request._metrics_started
        key = (route_label(request), request.method, response.status_code)
        children = _children.get(key)
        if children is None:
            children = _bind(*key)
        children[0].inc()
        children[1].observe(elapsed)
        return response


# (route, method, status) -> its counter and histogram children: prometheus_client's labels() validates
# and locks on every call, a few microseconds this lookup saves on every request. Bounded like the labels.
_children: dict = {}


def _bind(route: str, method: str, status: int) -> tuple:
    label = method if method in metrics.KNOWN_METHODS else "other"
    children = (metrics.HTTP_REQUESTS.labels(route, label, status), metrics.HTTP_DURATION.labels(route, label))
    if label == method:  # a method a client made up is not a key: it would grow the dict without bound
        _children[(route, method, status)] = children
    return children


def bearer_token(request) -> bytes | None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip().encode("utf-8", "surrogateescape") if scheme.lower() == "bearer" and token.strip() else None


def may_scrape(request) -> bool:
    """A client inside METRICS_ALLOWED_NETWORKS (loopback by default), or one presenting METRICS_TOKEN."""
    if in_networks(client_address(request), settings.METRICS_ALLOWED_NETWORKS):
        return True
    expected = settings.METRICS_TOKEN
    presented = bearer_token(request)
    return bool(expected) and presented is not None and hmac.compare_digest(presented, expected.encode())


def metrics_view(request):
    """GET /metrics: the Prometheus text format, summed over every process (core/metrics_collect.py).

    Anyone else gets the same 404 as a path that does not exist: the endpoint's existence is not told."""
    if not may_scrape(request):
        return problem_response(request, 404, "not_found", "Nothing was found at this path.")
    if request.method not in ("GET", "HEAD"):
        response = problem_response(request, 405, "method_not_allowed", f'Method "{request.method[:16]}" not allowed; use GET.')
        response["Allow"] = "GET, HEAD"
        return response
    from core.metrics_collect import registry

    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_PLAIN_0_0_4)  # the classic text format every Prometheus reads
