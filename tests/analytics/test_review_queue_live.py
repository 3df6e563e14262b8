"""The review queue on /ws/dashboard/: in the snapshot, then pushed as review_queue.updated after a decision."""
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from analytics.selectors import current_week_start
from analytics.tasks import project_and_publish
from core.asgi import application
from transactions import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def _websocket_test_origin(settings):
    # WebsocketCommunicator sends no Host header: the page it plays is served at http://localhost.
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["http://localhost"]


@pytest.fixture
def admin_cookie(admin_user, client_for):
    client = client_for(admin_user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def submit_and_approve():
    txn = services.transaction_submit(amount=Decimal("10.00"), currency="EUR", occurred_at=None, actor="clerk")
    services.transaction_approve(transaction_id=txn.id, actor="ana", reason="ok")


async def receive_until(communicator, wanted, *, limit=20):
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=10)
        if wanted(message):
            return message
    raise AssertionError("the message never came")


async def test_the_snapshot_and_a_decision_show_the_review_queue_live(admin_cookie):
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[ORIGIN, admin_cookie])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    snapshot = await communicator.receive_json_from(timeout=10)
    this_week = current_week_start().isoformat()
    assert snapshot["review_queue"]["pending"] == {"count": 0, "oldest_submitted_at": None, "oldest_age_seconds": None}
    assert snapshot["review_queue"]["this_week"]["week_start"] == this_week
    assert snapshot["review_queue"]["this_week"]["decisions"] == 0

    await database_sync_to_async(submit_and_approve)()
    # The commit hook may already have run the projector (embedded mode); running it again is harmless.
    await database_sync_to_async(project_and_publish)()
    queue = []
    update = await receive_until(
        communicator, lambda m: m["type"] == "review_queue.updated" and (queue.append(m) or m["week"]["decisions"] > 0)
    )
    # Projected on its own (each commit wakes the projector), the submission was pushed first: pending, no decision yet.
    assert all(m["pending"]["count"] == 1 and m["week"]["decisions"] == 0 for m in queue[:-1])
    assert update["week"]["week_start"] == this_week
    assert (update["week"]["approved"], update["week"]["decisions"]) == (1, 1)
    assert update["week"]["by_admin"] == [{"actor": "ana", "decisions": 1}]
    assert update["week"]["time_to_decision_p50_seconds"] is not None
    assert update["pending"] == {"count": 0, "oldest_submitted_at": None, "oldest_age_seconds": None}
    assert update["seq"] > snapshot["seq"]
    await communicator.disconnect()
