"""The Celery worker's own metrics endpoint (METRICS_PORT): its process group's series, for a Prometheus that cannot reach them through web.

In containers the worker does not share a disk (or process ids) with web, so the web's /metrics
cannot read the worker's multiprocess files. With METRICS_PORT set, the worker's main process serves
GET /metrics itself once it is ready: its own group's directory (PROMETHEUS_MULTIPROC_DIR, the
Procfile's worker line), summed over its pool processes, behind the same access rule as the web's
/metrics (core/metrics_http.may_scrape). A small WSGI server (prometheus_client's threading one)
rather than start_http_server, which has no hook for that check. The bound port is written to
PORT_FILE in the group's directory and logged (with METRICS_PORT=0 the kernel picks it).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
from http import HTTPStatus
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

PORT_FILE = "metrics-port"  # not *.db: the collector never reads it
PATH = "/metrics"


class _Request:
    """A WSGI environ in the shape the access check reads (Django's request.META holds the same keys)."""

    def __init__(self, environ: dict):
        self.META = environ


def _problem(start_response, status: int, code: str, detail: str, headers: tuple = ()) -> list[bytes]:
    from core.problems import PROBLEM_CONTENT_TYPE, problem_body

    body = json.dumps(problem_body(status=status, code=code, detail=detail)).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", PROBLEM_CONTENT_TYPE), ("Content-Length", str(len(body))), *headers],
    )
    return [body]


def registry_for(directory: str) -> CollectorRegistry:
    """Every process of this group (the main process and its pool, live or exited), from their files."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)
    return registry


def metrics_app(registry: CollectorRegistry):
    """WSGI: GET /metrics for clients the web's /metrics would let in; the same 404 for everyone else."""
    serve = make_wsgi_app(registry)

    def app(environ, start_response):
        from core.metrics_http import may_scrape

        if environ.get("PATH_INFO") != PATH or not may_scrape(_Request(environ)):
            return _problem(start_response, 404, "not_found", "Nothing was found at this path.")
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("GET", "HEAD"):
            return _problem(
                start_response, 405, "method_not_allowed", f'Method "{method[:16]}" not allowed; use GET.', (("Allow", "GET, HEAD"),)
            )
        if method == "HEAD":  # prometheus_client's app answers GET only: its headers, no body
            serve(dict(environ, REQUEST_METHOD="GET"), start_response)
            return []
        return serve(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    """No line per scrape on stderr (Celery's log would get one every 15 s)."""

    def log_message(self, format, *args):
        pass


def family_of(bind: str) -> socket.AddressFamily:
    """The socket family for METRICS_BIND (an IP address): WSGIServer would bind IPv4 only."""
    return socket.AF_INET6 if ipaddress.ip_address(bind).version == 6 else socket.AF_INET


class MetricsServer:
    """The listening endpoint, served by a daemon thread; the bound port is in `port` and in the PORT_FILE."""

    def __init__(self, directory: str, bind: str, port: int):
        self.directory = directory

        class Server(ThreadingWSGIServer):
            address_family = family_of(bind)

        self.httpd = make_server(bind, port, metrics_app(registry_for(directory)), Server, handler_class=_QuietHandler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)
        self.thread.start()
        self.port_file = os.path.join(directory, PORT_FILE)
        partial = f"{self.port_file}.{os.getpid()}"
        with open(partial, "w") as handle:
            handle.write(f"{self.port}\n")
        os.replace(partial, self.port_file)  # a reader sees the whole number or no file

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass

    def forget_in_child(self) -> None:
        """In a forked pool process: close the inherited copy of the listening socket (the parent keeps its own)."""
        self.httpd.socket.close()


_server: MetricsServer | None = None


def start(**kwargs) -> None:
    """worker_ready (the Celery main process, its pool already started): serve METRICS_PORT if it is set."""
    global _server
    from django.conf import settings

    port = settings.METRICS_PORT
    if port is None or _server is not None:
        return
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        logger.error(
            "METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not: the worker's metrics endpoint needs the Procfile's "
            "worker: line (docs/metrics.md); not started"
        )
        return
    try:
        _server = MetricsServer(directory, settings.METRICS_BIND, port)
    except OSError as exc:
        logger.error("the worker's metrics endpoint could not listen on %s port %s: %s", settings.METRICS_BIND, port, exc)
        return
    logger.info("worker metrics endpoint listening on %s port %s, path %s", settings.METRICS_BIND, _server.port, PATH)


def stop(**kwargs) -> None:
    """worker_shutdown: stop listening and remove the port file."""
    global _server
    if _server is not None:
        server, _server = _server, None
        server.stop()


def pool_process_started(**kwargs) -> None:
    """worker_process_init: a pool process forked after the endpoint started does not hold its socket."""
    global _server
    if _server is not None:
        server, _server = _server, None
        server.forget_in_child()
