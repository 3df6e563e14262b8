"""The /ws/dashboard/ consumer through the real ASGI application: auth, origin, snapshot, messages, errors."""
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from core.asgi import application
from realtime.broadcast import publish

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")


def session_cookie(client_for, user) -> tuple[bytes, bytes]:
    client = client_for(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def open_socket(*headers):
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=list(headers))
    connected, _ = await communicator.connect()
    return communicator, connected


@pytest.fixture
def admin_cookie(admin_user, client_for):
    return session_cookie(client_for, admin_user)


async def test_an_anonymous_socket_is_closed_with_4401():
    communicator, connected = await open_socket(ORIGIN)
    assert connected
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401, "reason": "authentication required"}


async def test_a_logged_in_non_staff_user_is_closed_with_4403(plain_user, client_for):
    cookie = await sync_to_async(session_cookie)(client_for, plain_user)
    communicator, connected = await open_socket(ORIGIN, cookie)
    assert connected
    assert (await communicator.receive_output())["code"] == 4403


async def test_a_foreign_origin_is_refused_at_the_handshake(admin_cookie):
    communicator, connected = await open_socket((b"origin", b"https://evil.example"), admin_cookie)
    assert not connected


async def test_staff_get_a_snapshot_on_connect(admin_cookie):
    communicator, connected = await open_socket(ORIGIN, admin_cookie)
    assert connected
    snapshot = await communicator.receive_json_from()
    assert snapshot["type"] == "snapshot"
    assert snapshot["seq"] == 0
    assert snapshot["time_zone"] == "UTC" and snapshot["week_start_day"] == "monday"
    assert snapshot["pending"] == {"count": 0, "latest": [], "as_of": 0}
    await communicator.disconnect()


async def test_ping_gets_pong(admin_cookie):
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    await communicator.receive_json_from()
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"text_data": "{not json"}, "bad_request"),
        ({"bytes_data": b"\x00\x01"}, "bad_request"),
        ({"text_data": json.dumps(["ping"])}, "bad_request"),
        ({"text_data": json.dumps({"type": "subscribe"})}, "bad_request"),
        ({"text_data": json.dumps({"type": "resume", "since": "yesterday"})}, "bad_request"),
        ({"text_data": json.dumps({"type": "resume", "since": -1})}, "bad_request"),
        ({"text_data": json.dumps({"type": "ping", "pad": "x" * 70_000})}, "frame_too_large"),
    ],
)
async def test_bad_client_frames_get_an_error_frame_and_the_socket_stays_open(admin_cookie, frame, code):
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    await communicator.receive_json_from()
    await communicator.send_to(**frame)
    error = await communicator.receive_json_from()
    assert error["type"] == "error" and error["code"] == code and error["detail"]
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


async def test_resume_answers_a_fresh_snapshot(admin_cookie):
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    await communicator.receive_json_from()
    await communicator.send_json_to({"type": "resume", "since": 0})
    assert (await communicator.receive_json_from())["type"] == "snapshot"
    await communicator.disconnect()


def weekly(seq, total, week="2026-11-16", currency="EUR"):
    return {"type": "weekly_income.updated", "seq": seq, "week_start": week, "currency": currency, "total": total, "count": 1}


async def test_group_messages_reach_the_socket_as_sent(admin_cookie):
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    await communicator.receive_json_from()
    message = weekly(3, "12.50")
    await sync_to_async(publish)([message])
    assert await communicator.receive_json_from() == message
    await communicator.disconnect()


async def test_a_stale_weekly_value_is_never_forwarded(admin_cookie):
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    await communicator.receive_json_from()
    await sync_to_async(publish)([weekly(9, "30.00"), weekly(7, "20.00"), weekly(8, "5.00", currency="USD"), weekly(10, "31.00")])
    received = [await communicator.receive_json_from() for _ in range(3)]
    assert [(m["seq"], m["currency"], m["total"]) for m in received] == [(9, "EUR", "30.00"), (8, "USD", "5.00"), (10, "EUR", "31.00")]
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()


async def test_messages_the_snapshot_already_covers_are_dropped(admin_cookie):
    from tests.factories import approved

    await sync_to_async(approved)("10.00", "EUR")  # projected on commit: the snapshot's seq moves past 1
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    snapshot = await communicator.receive_json_from()
    assert snapshot["seq"] >= 2
    await sync_to_async(publish)([weekly(snapshot["seq"], "1.00"), weekly(snapshot["seq"] + 1, "11.00")])
    assert (await communicator.receive_json_from())["seq"] == snapshot["seq"] + 1
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()


async def test_a_flood_of_frames_is_closed_with_4429_and_others_stay_served(admin_cookie):
    flooder, _ = await open_socket(ORIGIN, admin_cookie)
    bystander, _ = await open_socket(ORIGIN, admin_cookie)
    await flooder.receive_json_from()
    await bystander.receive_json_from()
    for _ in range(1000):
        await flooder.send_to(text_data='{"type":"ping"}')
    outputs = []
    while True:
        output = await flooder.receive_output(timeout=5)
        outputs.append(output)
        if output["type"] == "websocket.close":
            break
    assert outputs[-1] == {"type": "websocket.close", "code": 4429, "reason": "too many messages"}
    assert 40 <= len(outputs) - 1 <= 200  # the burst was answered before the close
    await bystander.send_json_to({"type": "ping"})
    assert await bystander.receive_json_from() == {"type": "pong"}
    await bystander.disconnect()
