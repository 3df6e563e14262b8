"""Static files under ASGI: served by the async-capable WhiteNoise, and the middleware chain never forces a thread."""
import pytest
from django.conf import settings
from django.utils.module_loading import import_string


def test_it_serves_a_static_file_through_the_async_handler(async_client):
    async def fetch():
        return await async_client.get("/static/dashboard_ui/css/app.css")

    import asyncio

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


@pytest.mark.parametrize("path", settings.MIDDLEWARE)
def test_every_middleware_can_run_async_so_a_waiting_request_blocks_no_thread(path):
    middleware = import_string(path)
    assert getattr(middleware, "async_capable", False), f"{path} is sync-only: Django would run every request in a blocked thread"
