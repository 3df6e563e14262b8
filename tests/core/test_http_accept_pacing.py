"""core/http.py accept pacing: a process taking a burst of connections pauses between them, so the other web processes get their share."""
import pytest

from core import http


@pytest.fixture
def paced(monkeypatch):
    """Two web processes; a clock that moves only when asked to; the pauses taken."""
    clock = {"now": 100.0}
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(http.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(http.time, "sleep", sleep)
    monkeypatch.setattr(http, "_last_accept", float("-inf"))
    monkeypatch.setattr(http, "_processes", 2)
    return clock, pauses


def test_it_pauses_before_each_connection_of_a_burst_but_not_the_first(paced):
    clock, pauses = paced
    for open_connections in range(4):
        http.pace_accepts(open_connections)
    assert pauses == [http.PACE_SECONDS] * 3


def test_a_connection_after_a_quiet_spell_is_served_at_once(paced):
    clock, pauses = paced
    http.pace_accepts(0)
    clock["now"] += http.BURST_SECONDS * 2
    http.pace_accepts(1)
    assert pauses == []


def test_a_process_holding_many_connections_no_longer_pauses(paced):
    clock, pauses = paced
    http.pace_accepts(http.PACE_BELOW - 1)
    http.pace_accepts(http.PACE_BELOW)
    http.pace_accepts(http.PACE_BELOW + 500)
    assert pauses == []


def test_a_single_web_process_never_pauses(paced, monkeypatch):
    clock, pauses = paced
    monkeypatch.setattr(http, "_processes", 1)
    for open_connections in range(4):
        http.pace_accepts(open_connections)
    assert pauses == []
