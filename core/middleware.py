"""Request ids (always ours, the client's kept apart) and problem+json for any exception a view raises under /api/."""
import os
import random
import re
import uuid

from django.core import signals
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from django.utils.log import log_response

from core import logconfig, tracing
from core.dualmode import BothModesMiddleware
from core.problems import problem_response

_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Request ids come from a generator seeded from the OS once per process (again in a forked child),
# not from uuid4(): its os.urandom() is a system call that sleeps on this 2-core VM (10 us of wall
# time for 0.6 us of CPU when idle; 0.56 ms per request under load in a profile of the approve
# path), and the thread must then get the GIL back. An id must be unique and ours, not secret: it
# is sent back in X-Request-ID and written to logs and event metadata.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4).hex


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


class RequestIdMiddleware(BothModesMiddleware):
    """request.id is generated here, never taken from the client: it is stored in event metadata
    forever, so a client must not be able to choose it (collide with, or impersonate, another
    request). A well-formed X-Request-ID from the client is kept as request.client_request_id.

    The id is bound to every log line the request writes (core/logconfig.py), and with tracing on
    the request is a server span (core/tracing.py)."""

    def before(self, request):
        request.id = new_request_id()
        supplied = request.headers.get("X-Request-ID", "")
        request.client_request_id = supplied if _VALID.fullmatch(supplied) else None
        # Left bound after the response: Django logs a 4xx/5xx after the whole middleware chain, and the
        # next request on this thread (or task) binds its own first.
        logconfig.bind_request(request.id)
        if tracing.active():
            tracing.start_request_span(request)
        return None

    def after(self, request, response):
        response["X-Request-ID"] = request.id
        if tracing.active():
            tracing.end_request_span(request, response)
        return response

    def process_exception(self, request, exception):
        """What a view under /api/ failed to handle: problem+json in every mode.

        Without this, DEBUG (what `make run` uses) answers Django's HTML technical page.
        """
        if not is_api_path(request.path):
            return None
        if isinstance(exception, Http404):
            return problem_response(request, 404, "not_found", "Nothing was found at this path.")
        if isinstance(exception, PermissionDenied):
            return problem_response(request, 403, "permission_denied", "You do not have permission to perform this action.")
        if isinstance(exception, RequestDataTooBig):
            return problem_response(request, 413, "body_too_large", "The request body is larger than 1 MiB.")
        if isinstance(exception, SuspiciousOperation):
            response = problem_response(request, 400, "bad_request", "The request was refused as malformed.")
            log_response("Bad request: %s", request.path, response=response, request=request, exception=exception)
            return response
        response = problem_response(request, 500, "server_error", "The server failed; the error is logged.")
        # What Django does for an unhandled exception: log it with its traceback, and tell
        # got_request_exception's receivers (the test client re-raises it from there).
        log_response("Internal Server Error: %s", request.path, response=response, request=request, exception=exception)
        signals.got_request_exception.send(sender=None, request=request)
        return response
