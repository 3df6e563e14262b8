"""Give back the worker thread asgiref keeps for a request while that request only awaits."""
from asgiref.sync import SyncToAsync


def release_request_thread() -> None:
    """Retire this request's thread-sensitive executor; the next sync step starts a fresh one.

    Under ASGI, Django runs each request's sync code (middleware hooks, DRF views) on one
    executor thread that lives until the request ends, idle or not: a hundred requests
    awaiting read-your-writes would park a hundred threads. Call this from async code once
    no sync work of the request is running and it holds no thread-bound state (its database
    connection already went back to the pool). Outside a ThreadSensitiveContext (the test
    client, WSGI) there is nothing to release.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return  # no per-request executor, or one its owner manages
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)
