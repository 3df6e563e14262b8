"""A base for middleware that runs in sync and async stacks alike, so no request is pinned to a thread."""
from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class BothModesMiddleware:
    """Middleware that runs in sync and async stacks alike: subclasses define before() and after().

    One sync-only middleware makes Django run every request's whole chain in a thread that stays
    blocked while an async view awaits (read-your-writes waits up to 10 s), so ours run in both.
    before() may answer the request itself by returning a response.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._is_async:
            return self._acall(request)
        response = self.before(request)
        return self.after(request, response if response is not None else self.get_response(request))

    async def _acall(self, request):
        response = self.before(request)
        return self.after(request, response if response is not None else await self.get_response(request))

    def before(self, request):
        return None

    def after(self, request, response):
        return response
