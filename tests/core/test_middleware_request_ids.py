"""Request ids: random version-4 UUIDs without a system call per request, distinct across a fork."""
import os
import uuid

from core.middleware import new_request_id


def test_it_gives_every_request_a_distinct_version_4_uuid_in_hex():
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(value) == 32 and uuid.UUID(value).hex == value and uuid.UUID(value).version == 4 for value in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write_end, "".join(new_request_id() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    parent = "".join(new_request_id() for _ in range(4))
    assert len(child) == len(parent) == 128 and child != parent
