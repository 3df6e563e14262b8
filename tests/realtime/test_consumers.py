"""The /ws/dashboard/ consumer through the real ASGI application: auth, origin, snapshot, messages, errors."""
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from core.asgi import application
from realtime.broadcast import publish, publish_resync

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
        # Nested far deeper than json.loads can recurse (it used to crash the consumer, no close frame).
        ({"text_data": "[" * 30_000 + "]" * 30_000}, "bad_request"),
        ({"text_data": '{"":' * 12_000 + "1" + "}" * 12_000}, "bad_request"),
        ({"text_data": "[" * 60_000}, "bad_request"),
        # Deeper than the 32 levels a frame may have, though valid and small.
        ({"text_data": '{"type":"ping","x":' + "[" * 32 + "]" * 32 + "}"}, "bad_request"),
    ],
    ids=["not-json", "binary", "not-an-object", "unknown-type", "bad-since", "negative-since", "too-large",
         "arrays-30000-deep", "objects-12000-deep", "unclosed-60000-deep", "33-deep"],
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


async def test_it_accepts_a_frame_nested_up_to_the_depth_limit(admin_cookie):
    communicator, _ = await open_socket(ORIGIN, admin_cookie)
    await communicator.receive_json_from()
    await communicator.send_to(text_data='{"type":"ping","x":' + "[" * 31 + "]" * 31 + ',"s":"' + "[" * 100 + '"}')
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


async def connected_admin(cookie):
    communicator, _ = await open_socket(ORIGIN, cookie)
    snapshot = await communicator.receive_json_from()
    return communicator, snapshot["seq"]


async def test_a_batch_reaches_the_socket_as_its_messages_in_order(admin_cookie):
    communicator, seq = await connected_admin(admin_cookie)
    approved = {"type": "transaction.approved", "seq": seq + 1, "transaction": {"id": "t1"}}
    update = weekly(seq + 1, "12.50")
    await sync_to_async(publish)([approved, update], after=seq, through=seq + 1)
    assert await communicator.receive_json_from() == approved
    assert await communicator.receive_json_from() == update
    await communicator.disconnect()


async def test_a_batch_the_client_already_has_is_not_sent_again(admin_cookie):
    communicator, seq = await connected_admin(admin_cookie)
    await sync_to_async(publish)([weekly(seq + 2, "30.00")], after=seq, through=seq + 2)
    await sync_to_async(publish)([weekly(seq + 2, "30.00")], after=seq, through=seq + 2)  # a task run twice
    await sync_to_async(publish)([weekly(seq + 1, "20.00")], after=seq, through=seq + 1)  # a stale recompute
    assert (await communicator.receive_json_from())["total"] == "30.00"
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()


async def test_a_missed_batch_is_noticed_and_answered_with_a_fresh_snapshot(admin_cookie):
    communicator, seq = await connected_admin(admin_cookie)
    # (seq, seq+5] never arrives; the next batch starts past what the client has.
    await sync_to_async(publish)([weekly(seq + 9, "99.00")], after=seq + 5, through=seq + 9)
    assert (await communicator.receive_json_from())["type"] == "snapshot"
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()


async def test_a_rebuild_sends_every_dashboard_a_fresh_snapshot(admin_cookie):
    communicator, _ = await connected_admin(admin_cookie)
    await sync_to_async(publish_resync)()
    assert (await communicator.receive_json_from())["type"] == "snapshot"
    await communicator.disconnect()


async def test_batches_the_snapshot_already_covers_are_dropped(admin_cookie):
    from tests.factories import approved

    await sync_to_async(approved)("10.00", "EUR")  # projected on commit: the snapshot's seq moves on
    communicator, seq = await connected_admin(admin_cookie)
    assert seq > 0
    await sync_to_async(publish)([weekly(seq, "1.00")], after=seq - 1, through=seq)
    await sync_to_async(publish)([weekly(seq + 1, "11.00")], after=seq, through=seq + 1)
    assert (await communicator.receive_json_from())["seq"] == seq + 1
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


async def test_an_empty_heartbeat_batch_reveals_a_lost_last_batch(admin_cookie):
    communicator, seq = await connected_admin(admin_cookie)
    await sync_to_async(publish)([], after=seq, through=seq)  # nothing missed: nothing sent
    assert await communicator.receive_nothing(timeout=0.1)
    await sync_to_async(publish)([], after=seq + 3, through=seq + 3)  # (seq, seq+3] never arrived
    assert (await communicator.receive_json_from())["type"] == "snapshot"
    await communicator.disconnect()
